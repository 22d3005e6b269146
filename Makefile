# Two commands for a fresh machine: `make demo` and `make test`. Both (re)build .venv when missing or stale.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.ladon-installed

.PHONY: setup demo demo-local test lint bench bench-split bench-fleet bench-adaptation fuzz demo-models clean

setup: $(STAMP)

MSG_SOURCES := $(wildcard ladon_msgs/msg/*.msg ladon_msgs/CMakeLists.txt ladon_msgs/pyproject.toml \
                           third_party/vision_msgs/msg/*.msg third_party/vision_msgs/pyproject.toml \
                           third_party/foxglove_msgs/msg/*.msg third_party/foxglove_msgs/pyproject.toml)

# Stale = created before the last change to the dependency list, the package metadata or the messages.
# One resolve: torch/torchvision/compressai, the ROS 2 Kilted wheels, our interface packages (built from source by
# scikit-build-core), the fallback vision_msgs only where `import vision_msgs.msg` fails (i.e. no ROS install
# provides it), test tools, and the project (editable).
$(STAMP): requirements.txt setup.py $(MSG_SOURCES)
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@touch $(VENV)/COLCON_IGNORE  # the venv holds ROS share/ trees; keep colcon from crawling it
	$(PY) -m pip install --quiet --upgrade pip
	vision=$$( ( ! $(PY) -m pip show -q vision-msgs-fallback >/dev/null 2>&1 && $(PY) -c 'import vision_msgs.msg' \
	           2>/dev/null ) || echo ./third_party/vision_msgs ); \
	foxglove=$$( ( ! $(PY) -m pip show -q foxglove-msgs-fallback >/dev/null 2>&1 && $(PY) -c 'import foxglove_msgs.msg' \
	           2>/dev/null ) || echo ./third_party/foxglove_msgs ); \
	$(PY) -m pip install --quiet -r requirements.txt ./ladon_msgs $$vision $$foxglove -e '.[server,robot,export,reference,train,dev,record]'
	@touch $(STAMP)

# The split as separate processes over real DDS: image source -> encoder -> server -> recorder.
demo: $(STAMP)
	$(PY) -m ladon_ros.demo --force  # demo_output/ is scratch: replace the last run

# The same split in one process, without ROS (encode -> packet bytes -> infer).
demo-local: $(STAMP)
	$(PY) -m ladon.demo --force

test: $(STAMP)
	$(VENV)/bin/ruff check .
	$(PY) -m pytest test -q

lint: $(STAMP)
	$(VENV)/bin/ruff check .

# `make bench MODEL=path/model.pt`; without MODEL the untrained ResNet-50 Ladon is timed (flagged in the output).
bench: $(STAMP)
	$(VENV)/bin/ladon bench --force $(if $(MODEL),--model $(MODEL),--random-weights)

# Split computing vs offloading vs local computing through the real nodes over a shaped veth link (needs root):
# bench/results/split/{split_bench.json, split_bench.md, *.png}. ARGS passes options, e.g. ARGS="--frames 5".
bench-split: $(STAMP)
	$(VENV)/bin/ladon-bench-split $(ARGS)

# The fleet server: N simulated robots over DDS into one server, batch-1 vs dynamic batching:
# bench/results/fleet/{fleet_bench.json, fleet_bench.md, fleet_bench.png}. ARGS passes options, e.g.
# ARGS="--model resnet50-random --device cuda --precision fp16 --robots 32 --rate 30" on a GPU machine.
bench-fleet: $(STAMP)
	$(VENV)/bin/ladon-bench-fleet $(ARGS)

# Coverage-guided fuzzing (atheris) of the packet parser + verifier, message conversion, rANS decoder and the whole
# server: 4.3 M executions in ~8 min on 2 cores, bench/results/fuzz/{fuzz.json,fuzz.md}; ARGS passes options.
fuzz: $(STAMP)
	$(PY) -m ladon_bench.fuzz --out bench/results/fuzz --force $(ARGS)

# Rate adaptation (the demo set) over a link changed during the run with tc (needs root):
# bench/results/adaptation/{adaptation.json, adaptation.md, adaptation.png}. ARGS passes options, e.g.
# ARGS="--schedule 0:50Mbit,10:64kbit,25:50Mbit --tasks classification --fps 10 --out bench/results/adaptation/64kbit".
bench-adaptation: $(STAMP)
	$(VENV)/bin/ladon-bench-adaptation $(ARGS)

# Retrain the bundled demo models from scratch (~80 min on 2 CPU cores): data set, teacher, two betas, evaluation.
demo-models: $(STAMP)
	LADON=$(VENV)/bin/ladon tools/train_demo_models.sh

clean:
	rm -rf demo_output .pytest_cache .ruff_cache .hypothesis
