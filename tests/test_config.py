"""AccelConfig: validation, derived widths, JSON round trip, hash, the --layers grammar."""

import json

import pytest
from hypothesis import given, settings, strategies as st

from ffaccel.config import AccelConfig, ConfigError, clog2, format_layers, load_config_file, parse_layers


def test_defaults_are_the_reference_design():
    cfg = AccelConfig()
    assert cfg.layers == (2000,) * 4 and cfg.inputs == 784 and cfg.classes == 10
    # W + A + ceil(log2(2000)) + 1 = 8 + 8 + 11 + 1
    assert cfg.accbits == 28 == cfg.accbits_required
    assert cfg.wfrac == (7,) * 4 and cfg.label_value == 255 and cfg.neutral_value == 26


@pytest.mark.parametrize("n,want", [(1, 0), (2, 1), (3, 2), (4, 2), (5, 3), (784, 10), (2000, 11), (2048, 11)])
def test_clog2(n, want):
    assert clog2(n) == want


@pytest.mark.parametrize("kwargs,fragment", [
    (dict(rows=0), "rows=0"),
    (dict(cols=257), "cols=257"),
    (dict(wbits=99), "wbits=99"),
    (dict(abits=0), "abits=0"),
    (dict(layers=()), "layers"),
    (dict(layers=(10, -1)), "layers[1]=-1"),
    (dict(inputs=-3), "inputs=-3"),
    (dict(classes=784), "classes=784"),
    (dict(mode="xx"), "mode='xx'"),
    (dict(exit_policy="first"), "exit_policy"),
    (dict(accbits=20), "can overflow"),
    (dict(thresholds=(1, 2)), "thresholds has 2 entries"),
    (dict(wfrac=(7, 7)), "wfrac has 2 entries"),
    (dict(rows=True), "not an integer"),
    (dict(clock_mhz=-1), "clock_mhz"),
    (dict(tech="3nm"), "tech"),
    (dict(label_value=300), "label_value=300"),
])
def test_bad_values_are_refused_with_the_name(kwargs, fragment):
    with pytest.raises(ConfigError) as e:
        AccelConfig(**kwargs)
    assert fragment in str(e.value)


def test_explicit_accbits_at_least_the_worst_case():
    assert AccelConfig(accbits=28).accbits == 28
    assert AccelConfig(accbits=40).accbits == 40
    with pytest.raises(ConfigError, match="needs 28 bits"):
        AccelConfig(accbits=27)


def test_accumulator_width_follows_the_widest_fan_in():
    cfg = AccelConfig(inputs=32, layers=(300, 5), wbits=4, abits=3)
    assert cfg.fan_in == (32, 300)
    assert cfg.accbits == 4 + 3 + 9 + 1


def test_json_round_trip_is_exact_and_hash_stable():
    cfg = AccelConfig(layers=(100, 50), inputs=64, rows=4, cols=8, thresholds=(123,), mode="mp",
                      exit_k=0.5, note="x")
    text = cfg.to_json()
    back = AccelConfig.from_json(text)
    assert back == cfg and back.to_json() == text and back.hash() == cfg.hash()
    assert json.loads(text)["layers"] == [100, 50]
    # the note is provenance only: not part of the hash
    assert cfg.replace(note="other").hash() == cfg.hash()
    assert cfg.replace(rows=5).hash() != cfg.hash()


def test_from_dict_refuses_unknown_keys_and_schema():
    with pytest.raises(ConfigError, match="unknown config key 'rowz'"):
        AccelConfig.from_dict({"rowz": 3})
    with pytest.raises(ConfigError, match="schema"):
        AccelConfig.from_dict({"schema": 99})
    with pytest.raises(ConfigError, match="does not parse"):
        AccelConfig.from_json("{")


def test_config_files(tmp_path):
    (tmp_path / "a.toml").write_text('layers = "2x64"\ninputs = 32\nrows = 4\n')
    cfg = AccelConfig.from_dict(load_config_file(tmp_path / "a.toml"))
    assert cfg.layers == (64, 64) and cfg.rows == 4
    (tmp_path / "b.json").write_text(AccelConfig(rows=3).to_json())
    assert AccelConfig.from_dict(load_config_file(tmp_path / "b.json")).rows == 3
    (tmp_path / "c.toml").write_text("rows = [")
    with pytest.raises(ConfigError, match="TOML"):
        load_config_file(tmp_path / "c.toml")
    (tmp_path / "d.yaml").write_text("rows: 3")
    with pytest.raises(ConfigError, match="extension"):
        load_config_file(tmp_path / "d.yaml")
    with pytest.raises(ConfigError, match="does not exist"):
        load_config_file(tmp_path / "missing.json")


def test_float64_bound_is_checked(monkeypatch):
    # The limits guarantee exactness: the largest legal config stays below 2**53 ...
    big = AccelConfig(inputs=1 << 20, layers=(4,), wbits=16, abits=16, rsqrt_frac=4)
    big.check_float64_exact()
    # ... and the check itself refuses a bound that is exceeded.
    import ffaccel.config as c
    monkeypatch.setattr(c, "FLOAT64_EXACT_BITS", 40)
    with pytest.raises(ConfigError, match="float64"):
        big.check_float64_exact()


# ---------------------------------------------------------------- --layers grammar
@pytest.mark.parametrize("spec,want", [
    ("4x2000", (2000,) * 4), ("2000,1000,500", (2000, 1000, 500)), ("2x16, 8", (16, 16, 8)),
    ("7", (7,)), (" 3X5 ", (5, 5, 5)),
])
def test_layers_grammar(spec, want):
    assert parse_layers(spec) == want


@pytest.mark.parametrize("spec", ["", "4x0", "banana", "0x5", "-5", "4x", "x4", "4x2000,", "1.5",
                                  "4x2000x3", "2,,3", "65x4", "4x70000", "²", "4x²", "٣x2000",
                                  "2x1000000000000"])
def test_layers_grammar_refuses(spec):
    with pytest.raises(ConfigError) as e:
        parse_layers(spec)
    assert "--layers" in str(e.value) and "allowed" in str(e.value)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(1, 65536), min_size=1, max_size=20))
def test_layers_grammar_round_trip(sizes):
    sizes = tuple(sizes)
    assert parse_layers(format_layers(sizes)) == sizes
    assert parse_layers(",".join(map(str, sizes))) == sizes


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=12))
def test_layers_grammar_never_crashes(spec):
    try:
        sizes = parse_layers(spec)
    except ConfigError:
        return
    assert sizes and all(1 <= n <= 65536 for n in sizes)


@settings(max_examples=200, deadline=None)
@given(rows=st.integers(-5, 300), cols=st.integers(-5, 300), wbits=st.integers(-2, 20),
       abits=st.integers(-2, 20), n=st.integers(-2, 5000))
def test_validation_accepts_exactly_the_allowed_range(rows, cols, wbits, abits, n):
    ok = 1 <= rows <= 256 and 1 <= cols <= 256 and 2 <= wbits <= 16 and 1 <= abits <= 16 and 1 <= n <= 65536
    try:
        cfg = AccelConfig(rows=rows, cols=cols, wbits=wbits, abits=abits, layers=(n,), afrac=0)
    except ConfigError:
        assert not ok
        return
    assert ok
    assert cfg.accbits == wbits + abits + clog2(max(784, 1)) + 1


def test_replace_re_derives_derived_fields():
    cfg = AccelConfig()
    small = cfg.replace(abits=4, wbits=4)
    assert small.label_value == 15 and small.wfrac == (3,) * 4 and small.accbits == 4 + 4 + 11 + 1
    # explicit values stay explicit
    fixed = AccelConfig(accbits=40, wfrac=(5, 5, 5, 5)).replace(abits=6)
    assert fixed.accbits == 40 and fixed.wfrac == (5,) * 4
    # a serialised config re-derives as well, and equal configs hash equally
    back = AccelConfig.from_json(cfg.to_json())
    assert back.replace(abits=4).label_value == 15
    assert AccelConfig(accbits=28) == cfg and AccelConfig(accbits=28).hash() == cfg.hash()
    assert cfg.to_dict()["accbits"] == 0 and cfg.to_dict(resolved=True)["accbits"] == 28
