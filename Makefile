# Convenience wrapper around CMake. On a fresh Debian machine:
#   make demo   - install what is missing, build, and generate text with the bundled model
#   make test   - install what is missing, build, and run every test
# Variables: BUILD (build directory), CMAKE_FLAGS (extra -D options), JOBS.

BUILD ?= build
CMAKE_FLAGS ?=
JOBS ?= $(shell nproc 2>/dev/null || echo 2)
DEB_PACKAGES := cmake make gcc libc6-dev pkg-config libcjson-dev libcmocka-dev libopenblas-dev libpcre2-dev libutf8proc-dev

.PHONY: all deps configure build test demo install clean

all: build

# Install missing Debian packages when root; otherwise say what to run.
deps:
	@missing=""; for p in $(DEB_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "installing:$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	  else \
	    echo "missing packages; run: sudo apt-get install -y$$missing"; exit 1; \
	  fi; \
	fi

configure: deps
	cmake -S . -B $(BUILD) -DFM_BUILD_TESTS=ON $(CMAKE_FLAGS)

build: configure
	cmake --build $(BUILD) -j $(JOBS)

test: build
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS)

demo: build
	$(BUILD)/examples/falconmamba generate -m models/kjv-mamba -p "And God said" -n 96 --seed 1

install: build
	cmake --install $(BUILD)

clean:
	rm -rf $(BUILD)
