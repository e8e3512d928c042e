# The course's commands. `make lab` and `make test` are the two the README promises:
# each creates .venv when needed, installs the pinned dependencies once (a stamp file
# remembers which dependency files it installed from) and then does its job.
# The Jupyter kernel is registered inside .venv (--sys-prefix), never user-wide: the
# notebooks ask for it by name, and Jupyter run from this .venv prefers it, so a second
# checkout cannot re-point this one's kernel.

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
HOST   ?= 127.0.0.1
PORT   ?= 8888
KERNEL ?= minitorch-attn
# pytest -n: parallel workers for the default suite (0 = in one process)
WORKERS ?= 2

DEPS := pyproject.toml

.PHONY: lab test test-slow test-gpu parity bench experiments html clean-venv

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade "pip>=24"

# One stamp per extra set: re-run pip only when pyproject.toml changed. The lab set includes
# the test set, so installing it writes both stamps (`make lab` then `make grade` installs once).
$(VENV)/.installed-test: $(DEPS) | $(PY)
	$(PY) -m pip install --quiet -e ".[test]"
	$(PY) -m ipykernel install --sys-prefix --name $(KERNEL) --display-name "Python (minitorch_attn)" >/dev/null
	touch $@

$(VENV)/.installed-lab: $(DEPS) | $(PY)
	$(PY) -m pip install --quiet -e ".[test,lab]"
	$(PY) -m ipykernel install --sys-prefix --name $(KERNEL) --display-name "Python (minitorch_attn)" >/dev/null
	touch $@ $(VENV)/.installed-test

# Opens a browser only where there is a display to open it on; Jupyter refuses root without --allow-root
# (containers and CI machines often run as root).
lab: $(VENV)/.installed-lab
	$(VENV)/bin/jupyter lab --notebook-dir=notebooks --ip=$(HOST) --port=$(PORT) \
		$(if $(DISPLAY),,--no-browser) $(if $(filter 0,$(shell id -u)),--allow-root)

# The whole course executed top to bottom and rendered to html/NN_*.html, to read in a browser,
# offline too: MathJax is copied from the mathjax package next to the pages.
html: $(VENV)/.installed-lab
	$(PY) -m minitorch_attn.render --output-dir html notebooks/*.ipynb

# The graded tests are `make grade`'s: it scores them one exercise at a time.
TEST_PATHS := tests notebooks --ignore=tests/graded
# BEGIN INSTRUCTOR ONLY
# Here every exercise is written, so the graded tests run with the rest (the reference earns every point).
TEST_PATHS := tests notebooks
# END INSTRUCTOR ONLY

# The default suite with every lesson notebook executed (nbmake), then the CUDA kernels under the
# simulator in their own process (NUMBA_ENABLE_CUDASIM is read when numba is first imported).
# In the student edition, a test that stops at an exercise not written yet is skipped and names it.
test: $(VENV)/.installed-test
	$(PY) -m pytest -n $(WORKERS) --nbmake -m "not slow and not gpu and not cudasim" $(TEST_PATHS) $(ARGS)
	NUMBA_ENABLE_CUDASIM=1 $(PY) -m pytest -m "cudasim and not slow" tests/cuda $(ARGS)

test-slow: $(VENV)/.installed-test
	$(PY) -m pytest -m slow $(ARGS)

test-gpu: $(VENV)/.installed-test
	$(PY) -m pytest -m "gpu or cudasim" tests/cuda $(ARGS)

parity: $(VENV)/.installed-test
	$(PY) -m minitorch_attn.parity --backend all

# Every op and the CBAM/BAM blocks vs PyTorch eager (about 10 min; meaningless on a busy machine).
# ARGS="--quick" for a smoke run, e.g. ARGS="--shapes 16x256x28x28 --blocks cbam --ops none".
bench: $(VENV)/.installed-test
	$(PY) -m minitorch_attn.bench $(ARGS)

# Every ablation table of the papers trained (3 seeds; finished runs are kept, so it resumes), then reported
# beside the papers' numbers with a figure per table in data/results/<experiment>/figure.png.
# SEEDS, JOBS (runs side by side, one Numba thread each) and ARGS="--quick" (tiny budget) adjust it.
SEEDS ?= 3
JOBS  ?= 2
experiments: $(VENV)/.installed-test
	$(PY) -m minitorch_attn.experiments run all --seeds $(SEEDS) --jobs $(JOBS) $(ARGS)
	$(PY) -m minitorch_attn.experiments report all $(filter --quick,$(ARGS))

clean-venv:
	rm -rf $(VENV)

# ---- Grading ------------------------------------------------------------------
# make grade: the graded tests of every exercise (EXERCISES="2.1 3" for some), a score
# table, and the same in $(GRADES). GRADE_TIMEOUT: seconds allowed per test.
GRADES        ?= grades.json
GRADE_TIMEOUT ?= 30
.PHONY: grade
grade: $(VENV)/.installed-test
	$(PY) minitorch_attn/grading --json $(GRADES) --timeout $(GRADE_TIMEOUT) $(EXERCISES)

# BEGIN INSTRUCTOR ONLY
# make student DEST=folder: the student edition (every solution region replaced by
# NotImplementedError, instructor-only files left out). Re-running replaces DEST.
DEST ?= student
.PHONY: student
student: $(VENV)/.installed-test
	$(PY) -m minitorch_attn.grading.edition $(DEST)
# END INSTRUCTOR ONLY
