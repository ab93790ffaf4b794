# Quick start: `make run` (demo provider on http://127.0.0.1:5000), `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: run test lint bench rp translations clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

run: $(BIN)/.installed
	$(BIN)/idp demo

rp: $(BIN)/.installed
	$(BIN)/python examples/relying_party.py

lint: $(BIN)/.installed
	$(BIN)/ruff check idp tests bench examples
	$(BIN)/ruff format --check idp tests bench examples

# axe-core for the accessibility browser test (package.json); without npm that one
# test is skipped (CI requires it: IDP_REQUIRE_BROWSER=1 in .ci/run).
node_modules/.package-lock.json: package.json package-lock.json
	-command -v npm >/dev/null && npm ci --no-audit --no-fund --silent

test: lint node_modules/.package-lock.json
	$(BIN)/pytest

# Benchmarks, not tests (about 5 minutes on 2 cores): one table, each figure beside
# its physical limit measured in the same run (bench/README.md). `pip install -e '.[bench]'`
# adds the PNG chart of the ratios.
bench: $(BIN)/.installed
	PYTHONPATH=$(CURDIR) $(BIN)/python bench/perf.py

# Extract the marked strings (Python: _, gettext, ngettext, _l, lazy_gettext…;
# templates: _(), {% trans %}), merge them into each catalog, compile the .mo.
# Then translate every new or fuzzy entry of idp/translations/fr/LC_MESSAGES/messages.po
# and run this target again (tests/test_i18n.py checks all of it).
translations: $(BIN)/.installed
	$(BIN)/pybabel extract -F babel.cfg -k _l -k lazy_gettext -k lazy_ngettext:1,2 -k lazy_pgettext:1c,2 -c Translators: -o idp/translations/messages.pot .
	$(BIN)/pybabel update -i idp/translations/messages.pot -d idp/translations --ignore-obsolete --ignore-pot-creation-date --no-fuzzy-matching
	$(BIN)/pybabel compile -d idp/translations

clean:
	rm -rf $(VENV) instance .pytest_cache
