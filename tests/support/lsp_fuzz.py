"""Hostile LSP traffic from a seed, and what the server must answer to each piece of it.

A `Fuzz` writes pieces: one or two framed messages each (a fault of framing comes with the
message after it), mostly well-formed requests and notifications about a few documents, with
every kind of damage a buggy client or a broken pipe produces mixed in. Each piece says which
request ids must be answered, exactly once, and with which outcomes (`None`: a result, else
an error code); and how many answers with a null id it causes (JSON-RPC answers a message whose
id cannot be read under null).

The documents are modelled here, independently of the server's code (lines split on \\n, \\r\\n
and \\r; positions in UTF-16 code units), so a test can check that the server's copy of each
document is still the editor's after the barrage.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

# Never logged at INFO: a test looks for it in the server's stderr.
SOURCE_MARKER = "quill_fuzz_source_text"

RESULT = None
PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
REQUEST_CANCELLED = -32800

_LINE_BREAK = re.compile(r"(\r\n|\r|\n)")
_WORDS = ["def", "return", "x", "value", "é", "ß", "名前", "😀", "𝔘", "\t", "(", ")", ":", "'s'"]
_ODD_TEXT = ["\u2028", "\x0b", "\x0c", "\x85", "\x00", "\ufeff", "\r", "\ud800", "\udfff"]
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def frame(body: bytes, line_end: bytes = b"\r\n", length: int | None = None) -> bytes:
    size = len(body) if length is None else length
    return b"Content-Length: %d%s%s" % (size, line_end, line_end) + body


def encode(message: Any) -> bytes:
    return json.dumps(message).encode()


def as_received(text: str) -> str:
    """The text as the server keeps it: lone surrogates become U+FFFD (one code unit each)."""
    return _LONE_SURROGATE.sub("\ufffd", text)


def units(text: str) -> int:
    """UTF-16 code units."""
    return len(text.encode("utf-16-le")) // 2


@dataclass
class Document:
    uri: str
    text: str
    version: int = 1
    # "open" (in sync), "aside" (a change was refused; the server has no copy until the whole
    # text comes again) or "closed".
    state: str = "closed"

    def lines(self) -> list[str]:
        parts = _LINE_BREAK.split(self.text)
        return parts[0::2]

    def offset(self, line: int, character: int) -> int:
        parts = _LINE_BREAK.split(self.text)
        offset = sum(len(part) for part in parts[: 2 * line])
        text = parts[2 * line]
        index = 0
        while index < len(text) and units(text[:index]) < character:
            index += 1
        return offset + index


@dataclass
class Piece:
    data: bytes
    messages: int
    expected: dict[Any, set[int | None]] = field(default_factory=dict)
    null_answers: int = 0
    kind: str = ""


class Fuzz:
    def __init__(self, seed: int, root_uri: str, documents: int = 4) -> None:
        self.rng = random.Random(seed)
        self.next_id = 1000
        self.documents = [
            Document(uri=f"{root_uri}/fuzz_{n}.py", text="") for n in range(documents)
        ]
        self.sent_ids: list[Any] = []
        self.expected: dict[Any, set[int | None]] = {}

    # -- building blocks -----------------------------------------------------------------------

    def new_id(self) -> Any:
        self.next_id += 1
        chosen: Any = self.next_id if self.rng.random() < 0.8 else f"id-{self.next_id}"
        self.sent_ids.append(chosen)
        return chosen

    def text(self) -> str:
        rng = self.rng
        lines = []
        for _ in range(rng.randint(0, 12)):
            words = [rng.choice(_WORDS) for _ in range(rng.randint(0, 6))]
            if rng.random() < 0.1:
                words.append(rng.choice(_ODD_TEXT))
            lines.append(" ".join([*words, SOURCE_MARKER if rng.random() < 0.3 else ""]))
        breaks = [rng.choice(["\n", "\n", "\r\n", "\r"]) for _ in lines]
        return "".join(line + end for line, end in zip(lines, breaks, strict=True))

    def position(self, document: Document) -> tuple[dict[str, int], bool]:
        """A position in the document: valid (True) or not (past the end, inside a pair)."""
        rng = self.rng
        lines = document.lines()
        line = rng.randrange(len(lines))
        text = lines[line]
        roll = rng.random()
        if roll < 0.08:
            return {"line": len(lines) + rng.randint(0, 3), "character": 0}, False
        if roll < 0.16:
            return {"line": line, "character": units(text) + rng.randint(1, 3)}, False
        astral = [i for i, char in enumerate(text) if ord(char) > 0xFFFF]
        if roll < 0.24 and astral:
            index = rng.choice(astral)
            return {"line": line, "character": units(text[:index]) + 1}, False
        index = rng.randint(0, len(text))
        return {"line": line, "character": units(text[:index])}, True

    def request(self, method: str, params: Any, msg_id: Any = None) -> tuple[dict[str, Any], Any]:
        msg_id = self.new_id() if msg_id is None else msg_id
        return {"jsonrpc": "2.0", "id": msg_id, "method": method, "params": params}, msg_id

    @staticmethod
    def notification(method: str, params: Any) -> dict[str, Any]:
        return {"jsonrpc": "2.0", "method": method, "params": params}

    def piece(self, message: Any, kind: str, expect: set[int | None] | None = None) -> Piece:
        body = message if isinstance(message, bytes) else encode(message)
        piece = Piece(frame(body), 1, kind=kind)
        if expect is not None and isinstance(message, dict):
            piece.expected[message["id"]] = expect
        return piece

    # -- pieces ----------------------------------------------------------------------------------

    def pieces(self, messages: int) -> Iterator[Piece]:
        """Pieces until `messages` messages are written."""
        kinds = [
            (self.completion, 30),
            (self.change, 18),
            (self.open_or_close, 4),
            (self.command, 6),
            (self.code_action, 3),
            (self.bad_params, 14),
            (self.bad_envelope, 8),
            (self.bad_json, 5),
            (self.framing_fault, 8),
            (self.notification_noise, 7),
        ]
        makers = [maker for maker, _ in kinds]
        weights = [weight for _, weight in kinds]
        written = 0
        while written < messages:
            piece = self.rng.choices(makers, weights)[0]()
            written += piece.messages
            for msg_id, outcomes in piece.expected.items():
                self.expected[msg_id] = outcomes
            yield piece

    def completion(self) -> Piece:
        document = self.rng.choice(self.documents)
        position, valid = self.position(document)
        context = {"triggerKind": self.rng.choice([1, 2])}
        params = {"textDocument": {"uri": document.uri}, "position": position, "context": context}
        message, _ = self.request("textDocument/inlineCompletion", params)
        # A document that is not open, or has NUL characters (binary), gets no items first.
        ok = valid or document.state != "open" or "\x00" in document.text
        return self.piece(message, "completion", {RESULT} if ok else {INVALID_PARAMS})

    def change(self) -> Piece:
        rng = self.rng
        document = rng.choice(self.documents)
        document.version += 1
        identifier = {"uri": document.uri, "version": document.version}
        roll = rng.random()
        if roll < 0.1 or document.state == "aside" and roll < 0.5:
            text = self.text()
            document.text = as_received(text)
            if document.state == "aside":
                document.state = "open"
            change: dict[str, Any] = {"text": text}
        else:
            lines = document.lines()
            start, start_ok = self.position(document)
            end, end_ok = self.position(document)
            if (start["line"], start["character"]) > (end["line"], end["character"]):
                start, end = end, start
            reversed_range = start != end and rng.random() < 0.15
            if reversed_range:
                start, end = end, start
            text = " ".join(rng.choice(_WORDS) for _ in range(rng.randint(0, 3)))
            if rng.random() < 0.2:
                text += rng.choice(["\n", "\r\n"]) + SOURCE_MARKER
            change = {"range": {"start": start, "end": end}, "text": text}
            if document.state == "open":
                if start_ok and end_ok and not reversed_range and lines:
                    first = document.offset(start["line"], start["character"])
                    last = document.offset(end["line"], end["character"])
                    document.text = document.text[:first] + text + document.text[last:]
                else:
                    document.state = "aside"
        params = {"textDocument": identifier, "contentChanges": [change]}
        return self.piece(self.notification("textDocument/didChange", params), "change")

    def open_or_close(self) -> Piece:
        document = self.rng.choice(self.documents)
        if document.state == "closed" or self.rng.random() < 0.5:
            text = self.text()
            document.text = as_received(text)
            document.state = "open"
            document.version += 1
            language = self.rng.choice(["python", "python", "rust", 5, None, "\ud800"])
            item = {"uri": document.uri, "languageId": language, "version": document.version}
            item["text"] = text
            message = self.notification("textDocument/didOpen", {"textDocument": item})
            return self.piece(message, "open")
        document.state = "closed"
        params = {"textDocument": {"uri": document.uri}}
        return self.piece(self.notification("textDocument/didClose", params), "close")

    def command(self) -> Piece:
        rng = self.rng
        nested = {"jsonrpc": "2.0", "id": 1, "method": "x", "params": {"jsonrpc": "2.0"}}
        choices: list[tuple[str, list[Any], set[int | None]]] = [
            ("quill.stats", [], {RESULT}),
            ("quill.acceptCompletion", [rng.choice(["nope", 5, nested, None])], {RESULT}),
            ("quill.acceptCompletion", [nested, nested], {RESULT}),
            ("quill.acceptCompletion", ["\ud800lone", "\udfff"], {RESULT}),
            ("quill.searchApi", [rng.choice([5, None, {"query": 5}, {"limit": -1}])], {-32602}),
            ("quill.searchApi", [{"query": "x", "limit": rng.choice([-5, "ten", 1.5])}], {-32602}),
            ("quill.repair", [rng.choice([{}, 5, {"uri": 5}, nested])], {-32602}),
            ("quill.repairLine", [rng.choice(["u", 5])], {-32602}),
            ("quill.noSuchCommand", [], {-32602}),
        ]
        command, arguments, outcomes = rng.choice(choices)
        params = {"command": command, "arguments": arguments}
        message, _ = self.request("workspace/executeCommand", params)
        return self.piece(message, "command", outcomes)

    def code_action(self) -> Piece:
        """Code actions (repair's offer) over any lines, in the document or past its end."""
        rng = self.rng
        document = rng.choice(self.documents)
        start, _ = self.position(document)
        end, _ = self.position(document)
        if (start["line"], start["character"]) > (end["line"], end["character"]):
            start, end = end, start
        diagnostic = {"range": {"start": start, "end": end}, "message": SOURCE_MARKER}
        context: dict[str, Any] = {"diagnostics": rng.choice([[], [diagnostic]])}
        if rng.random() < 0.3:
            context["only"] = [rng.choice(["quickfix", "refactor", "quickfix.quill.repair"])]
        params = {
            "textDocument": {"uri": document.uri},
            "range": {"start": start, "end": end},
            "context": context,
        }
        message, _ = self.request("textDocument/codeAction", params)
        return self.piece(message, "code action", {RESULT})

    def bad_params(self) -> Piece:
        """A request whose params are wrong in one named field."""
        rng = self.rng
        document = rng.choice(self.documents)
        good = {
            "textDocument": {"uri": document.uri},
            "position": {"line": 0, "character": 0},
            "context": {"triggerKind": 1},
        }
        damage = rng.choice(
            [
                ("position", "line", -1),
                ("position", "line", 2**40),
                ("position", "line", "zero"),
                ("position", "character", 1.5),
                ("position", "character", True),
                ("position", "character", None),
                ("position", "character", float("nan")),
                ("textDocument", "uri", 5),
                ("textDocument", "uri", ["a"]),
                ("context", "triggerKind", 9),
                ("context", "triggerKind", "auto"),
                ("context", None, None),
                ("position", None, None),
                ("textDocument", None, None),
            ]
        )
        part, key, value = damage
        if key is None:
            del good[part]
        else:
            good[part][key] = value
        params: Any = good
        if rng.random() < 0.1:
            params = rng.choice([[1, 2], "params", 7, None])
        if rng.random() < 0.15:
            message, _ = self.request(
                "workspace/executeCommand", {"command": "quill.stats", "arguments": {"a": 1}}
            )
        elif rng.random() < 0.15:
            code_action = {"textDocument": {"uri": 5}, "range": {}, "context": {}}
            message, _ = self.request("textDocument/codeAction", code_action)
        else:
            message, _ = self.request("textDocument/inlineCompletion", params)
        return self.piece(message, "bad params", {INVALID_PARAMS})

    def bad_envelope(self) -> Piece:
        rng = self.rng
        roll = rng.randrange(8)
        if roll == 0:  # an id of the wrong type: answered under null
            message = {"jsonrpc": "2.0", "id": rng.choice([1.5, True, None, {"a": 1}, [1]])}
            message["method"] = "workspace/executeCommand"
            piece = self.piece(message, "bad id")
            piece.null_answers = 1
            return piece
        if roll == 1:
            message, _ = self.request("quill/noSuchMethod", {})
            return self.piece(message, "unknown method", {METHOD_NOT_FOUND})
        if roll == 2:
            method = rng.choice(
                ["textDocument/didChange", "textDocument/didOpen", "exit", "initialized"]
            )
            message, _ = self.request(method, {"textDocument": {"uri": "file:///x", "version": 1}})
            return self.piece(message, "notification with an id", {INVALID_REQUEST})
        if roll == 3:
            message, _ = self.request("workspace/executeCommand", {"command": "quill.stats"})
            message["jsonrpc"] = rng.choice(["1.0", 2, None])
            return self.piece(message, "bad version", {INVALID_REQUEST})
        if roll == 4:
            message, _ = self.request("x", {})
            message["method"] = rng.choice([5, None, ["m"]])
            return self.piece(message, "bad method", {INVALID_REQUEST})
        if roll == 5:
            message, _ = self.request("initialize", {"processId": None, "capabilities": {}})
            message["params"]["rootUri"] = None
            return self.piece(message, "second initialize", {INVALID_REQUEST})
        if roll == 6:  # not an object at all
            piece = self.piece(encode(rng.choice([[1, 2], "text", 7, None, []])), "not an object")
            piece.null_answers = 1
            return piece
        # A request's method sent as a notification: ignored, nothing to answer.
        params = {"textDocument": {"uri": "file:///x"}, "position": {"line": 0, "character": 0}}
        return self.piece(self.notification("textDocument/inlineCompletion", params), "no id")

    def bad_json(self) -> Piece:
        rng = self.rng
        message, msg_id = self.request(
            "workspace/executeCommand", {"command": "quill.stats", "arguments": [SOURCE_MARKER]}
        )
        body = encode(message)
        roll = rng.randrange(4)
        if roll == 0:
            body = body[: rng.randint(body.index(b'"method"'), len(body) - 2)]
        elif roll == 1:
            body = body.replace(SOURCE_MARKER.encode(), b"\xff\xfe" + SOURCE_MARKER.encode())
        elif roll == 2:
            body = body.replace(b"[", b"[" * 5_000, 1)
        else:
            body = body.replace(b"}", b",}", 1)
        piece = self.piece(body, "bad json")
        piece.expected[msg_id] = {PARSE_ERROR}
        return piece

    def framing_fault(self) -> Piece:
        """A framing fault and a request after it: the request is answered (and the damaged
        message too, when its id can still be read)."""
        rng = self.rng
        first, first_id = self.request("workspace/executeCommand", {"command": "quill.stats"})
        after, after_id = self.request("workspace/executeCommand", {"command": "quill.stats"})
        body = encode(first)
        fault = rng.randrange(10)
        expected: dict[Any, set[int | None]] = {after_id: {RESULT}}
        null_answers = 0
        if fault == 0:  # body shorter than its Content-Length: read up to the next header
            data = frame(body, length=len(body) + rng.randint(1, 40))
            expected[first_id] = {RESULT}
        elif fault == 1:  # body longer than its Content-Length: cut, refused under its id
            data = frame(body, length=len(body) - rng.randint(1, 20))
            expected[first_id] = {PARSE_ERROR}
        elif fault == 2:
            data = bytes(rng.choice([b"garbage", b"\r\n\r\n}", b"\x00\xff", b"Content-Type: x"]))
            self.sent_ids.remove(first_id)
        elif fault == 3:
            data = frame(body, line_end=b"\n")
            expected[first_id] = {RESULT}
        elif fault == 4:
            data = b"Content-Length: 0\r\n\r\n"
            null_answers = 1
            self.sent_ids.remove(first_id)
        elif fault == 5:  # a length of 5,000 digits, then the body: read up to the next header
            data = b"Content-Length: " + b"9" * 5000 + b"\r\n\r\n" + body
            expected[first_id] = {RESULT}
        elif fault == 6:
            data = b"Content-Length: 100000000000\r\n\r\n" + body
            expected[first_id] = {RESULT}
        elif fault == 7:  # a header block over 8 KB, then the message
            data = b"X-Padding: " + b"p" * 9000 + b"\r\n" + frame(body)
            expected[first_id] = {RESULT}
        elif fault == 8:
            data = b"Content-Length: twelve\r\n\r\n" + body
            expected[first_id] = {RESULT}
        else:  # over the body limit the fuzzed server runs with (64 KiB): refused under its id
            first["params"]["arguments"] = ["p" * 70_000]
            data = frame(encode(first))
            expected[first_id] = {INVALID_REQUEST}
        piece = Piece(data + frame(encode(after)), 2, expected, null_answers, "framing")
        return piece

    def notification_noise(self) -> Piece:
        rng = self.rng
        roll = rng.randrange(7)
        if roll == 0 and self.sent_ids:
            cancelled = rng.choice(self.sent_ids)
            if cancelled in self.expected:
                self.expected[cancelled].add(REQUEST_CANCELLED)
            message = self.notification("$/cancelRequest", {"id": cancelled})
        elif roll == 1:
            message = self.notification("$/cancelRequest", {"id": rng.choice([None, {}, 1.5])})
        elif roll == 2:
            item = {
                "insertText": "x",
                "command": {"title": "", "command": "quill.acceptCompletion"},
            }
            item["command"]["arguments"] = rng.choice([[], [5], ["nope"], None, {"a": 1}])
            message = self.notification(
                "textDocument/didShowCompletion", {"item": rng.choice([item, 5, None])}
            )
        elif roll == 3:
            command = {"title": "", "command": "quill.acceptCompletion", "arguments": ["nope"]}
            item = {"insertText": "x", "command": rng.choice([command, None])}
            params = {"item": item, "acceptedLength": rng.choice([3, -1, 2**40, "a"])}
            message = self.notification("textDocument/didPartiallyAcceptCompletion", params)
        elif roll == 4:
            message = self.notification("initialized", {})
        elif roll == 5:
            uri = rng.choice([5, rng.choice(self.documents).uri])
            message = self.notification("textDocument/didSave", {"textDocument": {"uri": uri}})
        else:
            message = self.notification(rng.choice(["$/setTrace", "quill/nothing", "$/x"]), {})
        return self.piece(message, "notification")
