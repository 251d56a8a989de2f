"""Property tests: any mapping of keys to values either builds a config or fails naming the key."""

from hypothesis import given, settings
from hypothesis import strategies as st

from mappo import ConfigError
from mappo.config import FIELDS, from_dict, parse_cli_value

values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**6), 10**6),
    st.floats(allow_nan=True),
    st.text(max_size=8),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
    st.lists(st.integers(), max_size=2),
)
keys = st.one_of(st.sampled_from(sorted(FIELDS)), st.text(min_size=1, max_size=12))


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(keys, values, max_size=4))
def test_random_configs_build_or_name_the_culprit(data) -> None:
    try:
        config = from_dict(data)
    except ConfigError as err:
        message = str(err)
        assert "\n" not in message
        assert any(repr(key) in message for key in [*data, "minibatch_size"]), message
    else:
        for key, value in data.items():
            assert getattr(config, key) == value


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(sorted(FIELDS)), st.text(max_size=10))
def test_random_flag_text_parses_or_names_the_key(name, text) -> None:
    try:
        parse_cli_value(name, text)
    except ConfigError as err:
        assert f"'{name}'" in str(err)
