# Two commands on a fresh Debian machine (see README): `make demo` and `make test`.
# Each installs what it needs: Debian packages (mosquitto, influxdb, chromium + driver, python3-venv)
# when missing, and the Python virtual environment in .venv.

VENV ?= .venv
PY := $(VENV)/bin/python
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
APT_PACKAGES := mosquitto mosquitto-clients influxdb chromium chromium-driver python3-venv
DEMO_ARGS ?=

.PHONY: demo test setup system lint

demo: setup
	$(VENV)/bin/greennanny demo $(DEMO_ARGS)

test: setup
	$(PY) -m pytest

setup: system $(VENV)/.installed

system:
	@need=""; \
	for b in mosquitto mosquitto_sub influxd chromium chromedriver; do \
	  command -v $$b >/dev/null 2>&1 || [ -x /usr/sbin/$$b ] || need=1; \
	done; \
	python3 -c "import ensurepip" >/dev/null 2>&1 || need=1; \
	if [ -n "$$need" ]; then \
	  echo "installing Debian packages: $(APT_PACKAGES)"; \
	  $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $(APT_PACKAGES); \
	fi

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $@

lint: setup
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/mypy src
