# The commands README.md shows. `make serve` and `make test` each install what they need.
VENV ?= .venv
BIN := $(VENV)/bin
# Test processes (pytest-xdist, whole files per worker); TEST_WORKERS=0 runs serially.
TEST_WORKERS ?= 3

.PHONY: serve test lint typecheck layers unit bench bench-scale bench-soak fuzz

serve:
	scripts/bootstrap.sh run
	$(BIN)/jianzheng serve

test:
	scripts/bootstrap.sh test
	$(MAKE) lint typecheck layers
	$(BIN)/pytest -q -n $(TEST_WORKERS) --dist loadfile

lint:
	$(BIN)/ruff check .

typecheck:
	$(BIN)/mypy verifier signer service

layers:
	$(BIN)/lint-imports

unit:
	$(BIN)/pytest -q -m "not chain and not postgres and not browser and not slow"

bench:
	scripts/bootstrap.sh bench
	$(BIN)/python bench/anchor.py
	$(BIN)/python bench/codes.py
	$(BIN)/python bench/seal.py
	$(BIN)/python bench/public.py
	$(BIN)/python bench/durability.py

# Cost curves to 10^7 records (up to ~30 min) and the 5-minute sustained run (issue 17).
bench-scale:
	scripts/bootstrap.sh bench
	$(BIN)/python bench/scale.py

bench-soak:
	scripts/bootstrap.sh bench
	$(BIN)/python bench/soak.py

# Long fuzzing (not part of `make test`): schemathesis with many examples per operation,
# and the SIGKILL storm of tests/test_kill_chaos.py for 120 s per database.
fuzz:
	scripts/bootstrap.sh test
	JZ_FUZZ_EXAMPLES=$${JZ_FUZZ_EXAMPLES:-300} $(BIN)/pytest -q tests/test_fuzz_api.py
	JZ_CHAOS_SECONDS=$${JZ_CHAOS_SECONDS:-120} $(BIN)/pytest -q tests/test_kill_chaos.py
