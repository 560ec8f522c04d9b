"""The seed's entry points (phase_2_validation.md), runnable exactly as the seed writes them:

    pytest tests/test_phase_2_validation.py::test_load_single_symbol_cached -v -s
    pytest tests/test_phase_2_validation.py::test_load_uncached_symbols -v -s
    pytest tests/test_phase_2_validation.py::test_load_variable_limits -v -s
    pytest tests/test_phase_2_validation.py::test_load_variable_timeframes -v -s
    pytest tests/test_phase_2_validation.py::test_rto_rpo_requirements -v -s
"""

from seed_load import (  # noqa: F401
    test_load_single_symbol_cached,
    test_load_uncached_symbols,
    test_load_variable_limits,
    test_load_variable_timeframes,
)
from seed_rto import test_rto_rpo_requirements  # noqa: F401
