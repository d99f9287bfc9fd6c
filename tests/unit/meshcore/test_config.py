import pytest

from meshcore.config import ConsoleConfig, NodeConfig, ProxyConfig, from_json, to_json


@pytest.mark.parametrize("config", [
    NodeConfig(home="/h", models=("/m/a.gguf", "/m/b.gguf"), max_vram_gb=1.5, device="CUDA0", bind_port=4000),
    ProxyConfig(home="/h", port=1234, listen_all=True),
    ConsoleConfig(home="/h", port=3000, api_port=1234),
])
def test_round_trip(config: object) -> None:
    assert from_json(type(config), to_json(config)) == config


def test_unknown_fields_are_refused() -> None:
    with pytest.raises(ValueError, match="colour"):
        from_json(ProxyConfig, '{"home": "/h", "colour": "red"}')


def test_defaults_are_the_documented_ports() -> None:
    assert ProxyConfig(home="/h").port == 9337
    assert ConsoleConfig(home="/h").port == 3131
    assert ProxyConfig(home="/h").max_body_bytes == 8 * 1024 * 1024
