import pytest

from meshcore.errors import ConfigError
from meshcore.llama_bin import Device, check_device, device_args, parse_device_list

CUDA_OUTPUT = """ggml_cuda_init: found 2 CUDA devices:
Available devices:
  CUDA0: NVIDIA H200 (143167 MiB, 142544 MiB free)
  CUDA1: NVIDIA H200 (143167 MiB, 142544 MiB free)
"""


def test_parse_device_list() -> None:
    assert parse_device_list(CUDA_OUTPUT) == [Device("CUDA0", "NVIDIA H200", 143167, 142544),
                                              Device("CUDA1", "NVIDIA H200", 143167, 142544)]
    assert parse_device_list("Available devices:\n  (none)\n") == []


def test_cpu_is_always_valid_and_names_are_spelled_as_llama_cpp_spells_them() -> None:
    devices = parse_device_list(CUDA_OUTPUT)
    assert check_device("cpu", []) == "CPU" and check_device("none", devices) == "CPU"
    assert check_device("cuda1", devices) == "CUDA1"
    assert check_device("CUDA0, cuda1", devices) == "CUDA0,CUDA1"


@pytest.mark.parametrize("spec", ["CUDA2", "Metal", "CUDA0,", "gpu"])
def test_a_bad_device_is_one_line_naming_the_valid_ones(spec: str) -> None:
    with pytest.raises(ConfigError) as err:
        check_device(spec, parse_device_list(CUDA_OUTPUT))
    message = str(err.value)
    assert "\n" not in message and "valid: CPU, CUDA0, CUDA1" in message and repr(spec) in message


def test_on_a_cpu_only_build_the_error_says_so() -> None:
    with pytest.raises(ConfigError, match="valid: CPU .*no accelerator was found"):
        check_device("CUDA0", [])


def test_device_args() -> None:
    assert device_args(None) == []
    assert device_args("CPU") == ["--device", "none"]
    assert device_args("CUDA0") == ["--device", "CUDA0"]
    assert device_args("CUDA0", ["RPC0", "RPC1"]) == ["--device", "CUDA0,RPC0,RPC1"]
    assert device_args("CPU", ["RPC0"]) == ["--device", "RPC0"]
