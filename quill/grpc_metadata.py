"""gRPC metadata keys shared by the language server, serving and the load balancers in ops/."""

# Load balancers (ops/) hash this header so one workspace keeps hitting the replica whose
# prefix cache and index are warm for it.
WORKSPACE_HEADER = "x-quill-workspace"

# Bearer tokens travel the way gRPC's access-token credentials send them:
# `authorization: Bearer <token>`.
AUTHORIZATION_HEADER = "authorization"
BEARER_PREFIX = "Bearer "


def routing_metadata(workspace_id: str) -> tuple[tuple[str, str], ...]:
    return ((WORKSPACE_HEADER, workspace_id),) if workspace_id else ()
