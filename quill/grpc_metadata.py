"""gRPC metadata keys shared by the language server, serving and the load balancers in ops/."""

# Load balancers (ops/) hash this header so one workspace keeps hitting the replica whose
# prefix cache and index are warm for it.
WORKSPACE_HEADER = "x-quill-workspace"
# The bearer token names the tenant; balancers cannot map tokens to tenants, so they hash the
# token itself together with the workspace: two tenants' equal workspace ids spread apart.
AUTHORIZATION_HEADER = "authorization"
# What a load balancer's hash key is made of, in this order (ops/haproxy, ops/kubernetes).
ROUTING_HEADERS = (WORKSPACE_HEADER, AUTHORIZATION_HEADER)

# Bearer tokens travel the way gRPC's access-token credentials send them:
# `authorization: Bearer <token>`.
AUTHORIZATION_HEADER = "authorization"
BEARER_PREFIX = "Bearer "


def routing_metadata(workspace_id: str) -> tuple[tuple[str, str], ...]:
    return ((WORKSPACE_HEADER, workspace_id),) if workspace_id else ()
