"""The BC formats table is defined once per language: the C++ contract's table matches codec/formats.py."""

import re

from ntc_export.codec.formats import TABLE
from ntc_export.util.paths import PLUGINS_DIR


def test_cpp_table_matches_python_table():
    source = (PLUGINS_DIR / "common" / "bc_decode_contract.cpp").read_text()
    rows = re.findall(r'\{"(\w+)", (\d+), (\d+), (\d+)\}', source)  # {name, code, channels, words}
    cpp = {name: (int(code), int(channels), int(words)) for name, code, channels, words in rows}
    assert cpp == {f.name: (f.code, f.channels, f.int32_words) for f in TABLE.values()}
