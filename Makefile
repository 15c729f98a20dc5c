# The two quick-start commands (README) and their pieces.
PY := .venv/bin/python
DEMO_DATA := data/coco_shapes
DEMO_CONFIG := configs/demo/maskrcnn_mutual_r18_shapes.py
DEMO_WORK_DIR := work_dirs/demo
TREES_DATA := data/trees
TREES_CONFIG := configs/demo/retinanet_mutual_r18_trees.py
TREES_WORK_DIR := work_dirs/trees

.PHONY: setup demo trees test test-fast lint

setup:
	bash tools/setup_env.sh

# Generate the shapes data, train the demo Mask R-CNN with mutual learning, evaluate
# every (width, scale) and write the table, query table and plot to $(DEMO_WORK_DIR).
demo: setup
	$(PY) tools/make_demo_data.py --out $(DEMO_DATA) --num-train 400 --num-val 100 --size 128
	$(PY) tools/train.py $(DEMO_CONFIG) --work-dir $(DEMO_WORK_DIR)
	@echo "Results: $(DEMO_WORK_DIR)/per_config.csv, query_table.json, per_config.png"

# Real photographs: tile deepforest's NEON aerial images of tree crowns into COCO data,
# train the RetinaNet demo with mutual learning and evaluate every (width, scale)
# (docs/user_guides/real_data.md).
trees: setup
	$(PY) tools/make_trees_data.py --out $(TREES_DATA)
	$(PY) tools/train.py $(TREES_CONFIG) --work-dir $(TREES_WORK_DIR)
	@echo "Results: $(TREES_WORK_DIR)/per_config.csv, query_table.json, per_config.png"

lint: setup
	.venv/bin/ruff check .

test: lint
	OMP_NUM_THREADS=1 $(PY) -m pytest -n 2 --dist loadgroup --durations=15

# For development: everything but the tests marked slow (processes, Runner trainings).
test-fast: lint
	OMP_NUM_THREADS=1 $(PY) -m pytest -n 2 --dist loadgroup -m "not slow"
