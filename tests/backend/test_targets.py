"""Target table rules, precision refusals and `ntc-export targets`."""

import json

import pytest
from click.testing import CliRunner
from ntc_export.backend.trt.targets import DEFAULT_TARGETS, TARGETS, check_precision, get_target
from ntc_export.util.errors import NtcError

# The product card's table, written out independently of the module's rules.
EXPECTED = {
    "rtx-turing": (75, "tensorrt_rtx", {"fp32", "fp16"}, "native"),
    "rtx-ampere": (86, "tensorrt_rtx", {"fp32", "fp16", "bf16", "int8", "int4"}, "native"),
    "rtx-ada": (89, "tensorrt_rtx", {"fp32", "fp16", "bf16", "int8", "fp8", "int4"}, "native"),
    "rtx-blackwell": (120, "tensorrt_rtx", {"fp32", "fp16", "bf16", "int8", "fp8", "int4", "nvfp4"}, "native"),
    "gb10": (121, "tensorrt_rtx", {"fp32", "fp16", "bf16", "int8", "int4", "nvfp4"}, "native"),
    "jetson-orin": (87, "tensorrt", {"fp32", "fp16", "bf16", "int8", "int4"}, "plugin"),
    "jetson-thor": (110, "tensorrt", {"fp32", "fp16", "bf16", "int8", "fp8", "int4"}, "plugin"),
    "datacenter-hopper": (90, "tensorrt", {"fp32", "fp16", "bf16", "int8", "fp8", "int4"}, "native"),
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_table_matches_the_rules(name):
    sm, backend, precisions, attention = EXPECTED[name]
    t = get_target(name)
    assert (t.sm, t.backend, set(t.precisions), t.attention) == (sm, backend, precisions, attention)
    assert t.memory_budget_bytes > 0 and t.description
    for p in ("fp32", "fp16", "bf16", "int8", "fp8", "int4", "nvfp4"):
        if p in precisions:
            assert check_precision(t, p) is t
        else:
            with pytest.raises(NtcError):
                check_precision(t, p)


def test_table_has_exactly_the_expected_targets():
    assert set(TARGETS) == set(EXPECTED)
    assert set(DEFAULT_TARGETS) <= set(TARGETS)
    assert {"rtx-ampere", "rtx-ada", "rtx-blackwell", "jetson-orin"} == set(DEFAULT_TARGETS)


def test_fp8_on_ampere_is_refused_clearly():
    with pytest.raises(NtcError, match=r"^fp8 needs sm_89\+: rtx-ampere is sm_86"):
        check_precision("rtx-ampere", "fp8")


def test_rtx_fp8_only_on_sm89_and_sm120():
    with pytest.raises(NtcError, match="sm_89/sm_120: gb10 is sm_121"):
        check_precision("gb10", "fp8")
    check_precision("rtx-blackwell", "fp8")


def test_nvfp4_only_where_tensorrt_rtx_builds_fp4():
    for name in ("rtx-ampere", "rtx-ada", "jetson-thor", "datacenter-hopper"):
        with pytest.raises(NtcError, match=rf"^nvfp4 needs FP4 \(built on TensorRT-RTX for sm_120/sm_121 only\): "
                                           rf"{name} is sm_\d+ \(\w+\); it builds [^\n]*int4$"):
            check_precision(name, "nvfp4")
    assert check_precision("rtx-blackwell", "nvfp4").sm == 120


def test_int4_needs_sm80():
    with pytest.raises(NtcError, match=r"^int4 \(weight-only\) needs sm_80\+: rtx-turing is sm_75"):
        check_precision("rtx-turing", "int4")


def test_int8_and_bf16_need_sm80():
    with pytest.raises(NtcError, match=r"int8 \(Q/DQ\) needs sm_80\+: rtx-turing is sm_75"):
        check_precision("rtx-turing", "int8")
    with pytest.raises(NtcError, match=r"bf16 needs sm_80\+"):
        check_precision("rtx-turing", "bf16")


def test_unknown_names_list_the_choices():
    with pytest.raises(NtcError, match="unknown target 'rtx-kepler'; choose from rtx-turing, rtx-ampere"):
        get_target("rtx-kepler")
    with pytest.raises(NtcError, match="unknown precision 'int2'"):
        check_precision("rtx-ada", "int2")


def test_trt_version_ranges():
    orin, thor, ada = get_target("jetson-orin"), get_target("jetson-thor"), get_target("rtx-ada")
    assert orin.allows_trt_version("10.3.0.30") and not orin.allows_trt_version("10.4.0")
    assert not orin.allows_trt_version("8.6.2")
    assert thor.allows_trt_version("10.13.3") and thor.allows_trt_version("11.4.0")
    assert not thor.allows_trt_version("10.12.0") and not thor.allows_trt_version("11.5")
    assert ada.allows_trt_version("1.7.1.116") and not ada.allows_trt_version("1.6.0")


def test_targets_command_json_and_table():
    from ntc_export.cli import cli

    result = CliRunner().invoke(cli, ["targets", "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    assert [r["name"] for r in rows] == list(TARGETS)
    by_name = {r["name"]: r for r in rows}
    assert by_name["rtx-ampere"]["sm_name"] == "sm_86" and by_name["rtx-ampere"]["default"] is True
    assert "fp8" not in by_name["rtx-ampere"]["precisions"] and "fp8" in by_name["rtx-ada"]["precisions"]
    assert by_name["jetson-orin"]["trt_range"] == "10.3"
    table = CliRunner().invoke(cli, ["targets"])
    assert table.exit_code == 0 and "jetson-orin" in table.output and "sm_120" in table.output
