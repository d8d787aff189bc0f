"""Code the test folders share: paths to ../shared, recipe-error checks, trained models, the loopback SSH board.

Imported as `tests.support.<module>`; per-folder fixtures live in each folder's conftest.py.
"""
