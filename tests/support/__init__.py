"""Helpers shared by the test tiers, one module per thing they hold.

Test modules import helpers from here (or from a tier's own non-test modules, such as
`tests/integration/service_process.py`), never from another `test_*` module:
`tests/unit/test_test_layout.py` checks that.
"""
