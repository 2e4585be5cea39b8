# Every target installs what it needs: `make demo` and `make test` work on a fresh machine.
VENV ?= .venv
PY := $(VENV)/bin/python
PLATFORM := $(VENV)/bin/platform
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
FMNIST := /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz
DEMO_HOME ?= .embplat
SCENES_HOME ?= data/scenes-home
ALL_BUT_BAG := t-shirt,trouser,pullover,dress,coat,sandal,shirt,sneaker,ankle+boot

.PHONY: install sample-data demo test lint bench clean

CHROMIUM := /usr/bin/chromedriver

install: $(VENV)/.installed $(FMNIST) $(CHROMIUM)

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev,serve]'
	touch $@

$(FMNIST):
	$(SUDO) apt-get update -qq
	$(SUDO) apt-get install -y -qq dataset-fashion-mnist

# the search page's browser test (tests/serve/test_page.py) drives Debian's chromium
$(CHROMIUM):
	$(SUDO) apt-get update -qq
	$(SUDO) apt-get install -y -qq chromium chromium-driver

sample-data: install
	$(PLATFORM) datasets fashion-mnist --out data/fmnist --per-class 40 \
	    --classes $(ALL_BUT_BAG) --unseen sandal,shirt
	$(PLATFORM) datasets fashion-mnist --out data/new-bag --classes bag --per-class 20 --source test
	$(PLATFORM) datasets fashion-mnist --out data/queries --per-class 1 --offset 50 --source test

demo: sample-data
	EMBPLAT_HOME=$(DEMO_HOME) $(PLATFORM) ingest data/fmnist/JPEGImages
	EMBPLAT_HOME=$(DEMO_HOME) $(PLATFORM) classify data/queries/JPEGImages/coat/coat_00051.jpg \
	    data/queries/JPEGImages/sneaker/sneaker_00051.jpg --k 10
	EMBPLAT_HOME=$(DEMO_HOME) $(PLATFORM) search --image data/queries/JPEGImages/trouser/trouser_00051.jpg --k 5
	EMBPLAT_HOME=$(DEMO_HOME) $(PLATFORM) classes add bag data/new-bag/JPEGImages/bag
	EMBPLAT_HOME=$(DEMO_HOME) $(PLATFORM) classify data/queries/JPEGImages/bag/bag_00051.jpg --k 10
	EMBPLAT_HOME=$(DEMO_HOME) $(PLATFORM) evaluate --split valid --k 10
	EMBPLAT_HOME=$(DEMO_HOME) $(PLATFORM) classes list
	EMBPLAT_HOME=$(DEMO_HOME) $(PLATFORM) doctor
	# captions: a sentence search on the captioned scenes (their own data home)
	$(PLATFORM) datasets scenes --out data/scenes --images 200
	EMBPLAT_HOME=$(SCENES_HOME) $(PLATFORM) ingest data/scenes
	EMBPLAT_HOME=$(SCENES_HOME) $(PLATFORM) train matching --text-encoder glove --loss infonce \
	    --epochs 5 --embed-dim 128 --lr 1e-3
	EMBPLAT_HOME=$(SCENES_HOME) $(PLATFORM) search --text "a red circle above a blue square" \
	    --model matching-1 --k 5
	EMBPLAT_HOME=$(SCENES_HOME) $(PLATFORM) evaluate --model matching-1
	# captioning: a short training (early stopping on valid BLEU-4), then a caption of one image
	EMBPLAT_HOME=$(SCENES_HOME) $(PLATFORM) train caption --epochs 12 --image-size 128 \
	    --attention-dim 128 --decoder-dim 128 --lr 3e-3
	EMBPLAT_HOME=$(SCENES_HOME) $(PLATFORM) caption data/scenes/Flicker8k_Dataset/scene_00000.jpg --beam 3

test: install
	scripts/services.sh up
	$(VENV)/bin/pytest -q; status=$$?; scripts/services.sh down; exit $$status

lint: install
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/ruff format --check src tests benchmarks
	$(VENV)/bin/mypy src

bench: install
	scripts/services.sh up
	$(PY) benchmarks/run_all.py; status=$$?; scripts/services.sh down; exit $$status

clean:
	rm -rf $(DEMO_HOME) data .pytest_cache
