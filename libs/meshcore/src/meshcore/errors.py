"""The error hierarchy shared by every role. Each boundary (CLI, HTTP, gRPC)
translates these into its own shape: a one-line message, an OpenAI-style JSON
body, a gRPC status."""


class MeshError(Exception):
    """Base of every error Mesh LLM raises on purpose; str() is user-facing."""


class ConfigError(MeshError):
    """Bad command-line or configuration input."""


class TokenError(MeshError):
    """An invite token that cannot be decoded or is not for this mesh."""


class ModelNotFound(MeshError):
    """A model name that resolves to no GGUF file."""


class PortInUse(MeshError):
    """A port this node needs is already taken."""


def find_mesh_error(exc: BaseException) -> MeshError | None:
    """The MeshError inside `exc` (TaskGroups wrap errors in ExceptionGroups)."""
    if isinstance(exc, MeshError):
        return exc
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            found = find_mesh_error(inner)
            if found is not None:
                return found
    return None
