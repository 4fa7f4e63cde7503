// A second, independent LSP client: Microsoft's vscode-languageserver-protocol drives
// `quill lsp` over stdio and prints what it saw as JSON. Usage:
//   node client.js SERVING_ADDRESS FILE_URI TEXT_FILE -- SERVER_COMMAND...
"use strict";
const { spawn } = require("child_process");
const fs = require("fs");
const {
  createProtocolConnection,
  StreamMessageReader,
  StreamMessageWriter,
  InitializeRequest,
  InitializedNotification,
  DidOpenTextDocumentNotification,
  InlineCompletionRequest,
  ExecuteCommandRequest,
  ShutdownRequest,
  ExitNotification,
} = require("vscode-languageserver-protocol/node");

async function main() {
  const [address, uri, textFile, separator, ...command] = process.argv.slice(2);
  if (separator !== "--" || command.length === 0) throw new Error("usage: see the header");
  const text = fs.readFileSync(textFile, "utf8");
  const server = spawn(command[0], command.slice(1), { stdio: ["pipe", "pipe", "inherit"] });
  const connection = createProtocolConnection(
    new StreamMessageReader(server.stdout),
    new StreamMessageWriter(server.stdin),
  );
  const messages = [];
  connection.onNotification("window/showMessage", (params) => messages.push(params.message));
  connection.listen();
  const timer = setTimeout(() => { console.error("timed out"); server.kill(); process.exit(2); }, 120000);

  const init = await connection.sendRequest(InitializeRequest.type, {
    processId: process.pid,
    rootUri: null,
    capabilities: { textDocument: { inlineCompletion: { dynamicRegistration: false } } },
    initializationOptions: { servingAddress: address, requestTimeoutS: 120 },
  });
  await connection.sendNotification(InitializedNotification.type, {});
  await connection.sendNotification(DidOpenTextDocumentNotification.type, {
    textDocument: { uri, languageId: "python", version: 1, text },
  });
  const lines = text.split("\n");
  const position = { line: lines.length - 1, character: lines[lines.length - 1].length };
  const result = await connection.sendRequest(InlineCompletionRequest.type, {
    textDocument: { uri },
    position,
    context: { triggerKind: 1 },
  });
  const items = Array.isArray(result) ? result : (result ? result.items : []);
  let statsAfterAccept = null;
  if (items.length > 0 && items[0].command) {
    await connection.sendRequest(ExecuteCommandRequest.type, {
      command: items[0].command.command,
      arguments: items[0].command.arguments,
    });
    statsAfterAccept = await connection.sendRequest(ExecuteCommandRequest.type, {
      command: "quill.stats",
      arguments: [],
    });
  }
  let badPosition = null;
  try {
    await connection.sendRequest(InlineCompletionRequest.type, {
      textDocument: { uri },
      position: { line: lines.length + 10, character: 0 },
      context: { triggerKind: 1 },
    });
  } catch (error) {
    badPosition = { code: error.code, message: error.message };
  }
  await connection.sendRequest(ShutdownRequest.type);
  await connection.sendNotification(ExitNotification.type);
  clearTimeout(timer);
  console.log(JSON.stringify({
    capabilities: init.capabilities,
    serverInfo: init.serverInfo,
    position,
    items,
    statsAfterAccept,
    badPosition,
    messages,
  }));
  connection.dispose();
}

main().catch((error) => { console.error(error); process.exit(1); });
