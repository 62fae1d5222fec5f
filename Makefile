# kubenet: `make up` prepares and launches the cluster, `make test` runs the tests.
# `make help` lists every target.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
INVOKE := $(BIN)/invoke

# The cluster file's path comes to make as text it would expand ($(...) runs a command)
# and split (at spaces): anything but plain characters is refused, as the paths inside
# the file are, before it is used anywhere.
HASH := \#
OPEN := (
CLOSE := )
empty :=
SPACE := $(empty) $(empty)
TAB := $(empty)	$(empty)
CONFIG_TEXT := $(if $(filter command line,$(origin CONFIG)),$(value CONFIG),$(value KUBENET_CONFIG))
UNSAFE := $$ $(HASH) % : ; ' " \ $(OPEN) $(CLOSE) ` * ? [ ] { } | & < > = ! ^
CONFIG_UNSAFE := $(strip $(foreach c,$(UNSAFE),$(if $(findstring $(c),$(CONFIG_TEXT)),'$(c)')) \
  $(if $(findstring $(SPACE),$(CONFIG_TEXT)),' ') $(if $(findstring $(TAB),$(CONFIG_TEXT)),'\t'))

ifneq ($(CONFIG_UNSAFE),)
unexport CONFIG KUBENET_CONFIG  # make would expand them into the recipe's environment
REFUSAL := kubenet: error: the cluster file's path (CONFIG or KUBENET_CONFIG) has characters that make cannot take in a file name: $(CONFIG_UNSAFE) (hint: use a path of letters, digits and / . _ - + , @ ~, or run the invoke tasks without make)
$(or $(MAKECMDGOALS),help): export KUBENET_REFUSAL := $(REFUSAL)
$(or $(MAKECMDGOALS),help):
	@printf '%s\n' "$$KUBENET_REFUSAL" >&2; exit 1
else

# A kubenet command that failed has said why, in one line: make then ends without lines of
# its own ("No such file", "*** Error 1"), with a non-zero status (130). GNU make has no way
# to fail quietly but to be interrupted, so the failed recipe interrupts it, and stays a
# moment (make's handler waits for it; one that ended first would race make's own wait)
# before it ends without an error of its own to report.
QUIETLY := || { kill -INT $$PPID; sleep 0.5; exit 0; }

# The cluster file; per-VM rules come from it through `invoke makevars`.
CONFIG ?= $(or $(KUBENET_CONFIG),cluster.yaml)
CLUSTER_MK := $(dir $(CONFIG)).$(basename $(notdir $(CONFIG))).mk
CLUSTER_GOALS := setup up

.DEFAULT_GOAL := help
.PHONY: help deps test-deps venv test doctor bench bench-boot bench-doctor bench-setup bench-snapshot bench-memory bench-hosts down destroy hostnet clean-venv $(CLUSTER_GOALS)

help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  %-15s %s\n", $$1, $$2}' $(MAKEFILE_LIST)
	@if [ -x $(INVOKE) ]; then echo; $(INVOKE) --list; else echo; echo "  and the invoke tasks (ls, ssh, exec, logs, ...): \`make venv\`, then \`$(INVOKE) --list\`"; fi

deps: ## install the programs kubenet runs (qemu, UEFI firmware, tmux, ssh, vde2) if missing
	@scripts/install-deps

test-deps: ## install what the tests need as well (busybox, cpio, cloud-init, debootstrap, ...) if missing
	@scripts/install-deps --test

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	@# setuptools warns about every editable install, in 10 lines a newcomer cannot act on; the
	@# compat mode is a path in a .pth file, where the default import hook costs ~20 ms per start
	PYTHONWARNINGS=ignore $(BIN)/pip install --quiet --config-settings editable_mode=compat -e .
	@touch $@

# The test tools (pytest and the rest) only for `make test`: `make up` needs none of them.
$(BIN)/.test-installed: $(BIN)/.installed
	PYTHONWARNINGS=ignore $(BIN)/pip install --quiet --config-settings editable_mode=compat -e '.[test]'
	@touch $@

# invoke never writes bytecode (its --write-pyc is off by default), so without this every
# `invoke ls` in a pipeline would compile kubenet's modules again: about 30 ms a start.
# Best effort: a checkout this user cannot write is run uncached, never refused.
$(BIN)/.compiled: $(BIN)/.installed $(wildcard kubenet/*.py kubenet/*/*.py) tasks.py
	@$(BIN)/python -m compileall -q kubenet tasks.py >/dev/null 2>&1; touch $@ 2>/dev/null; true

venv: $(BIN)/.installed $(BIN)/.compiled ## create .venv with kubenet and invoke

test: test-deps venv $(BIN)/.test-installed ## run the whole test suite, the real-VM tests included
	$(BIN)/pytest

bench: venv $(BIN)/.test-installed ## measure start-up of `invoke ls`/`argv`, how fast `invoke up` launches 7, 30, 60 stub VMs, how fast Ctrl-C ends its wait
	$(BIN)/python bench/cli_latency.py
	$(BIN)/python bench/launch.py
	$(BIN)/python bench/ctrl_c.py

bench-setup: test-deps venv $(BIN)/.test-installed ## time `make setup` of 7 fresh VMs, with nothing to do, and `make up` when all run
	$(BIN)/python bench/setup.py

bench-boot: test-deps venv $(BIN)/.test-installed ## 7 real tiny VMs under TCG: SSH connections each guest took before ready, and time to ready against the same qemus started directly
	$(BIN)/python bench/boot.py

bench-snapshot: test-deps venv $(BIN)/.test-installed ## time live and stopped snapshots of 7 real tiny VMs under TCG: save, restore, pauses, SSH again
	$(BIN)/python bench/snapshot.py

bench-doctor: test-deps venv $(BIN)/.test-installed ## time `invoke doctor` on a healthy cluster of 7 real tiny VMs under TCG
	$(BIN)/python bench/doctor.py

bench-memory: test-deps venv $(BIN)/.test-installed ## qemu's memory and boot time per TCG translation cache size; page cache given back by the balloon
	$(BIN)/python bench/memory.py

bench-hosts: test-deps venv $(BIN)/.test-installed ## as root: VMs on two hosts (a namespace with its own sshd) against one: ping RTT, TCP throughput, make up
	$(BIN)/python bench/hosts.py

doctor: venv ## check the host and every VM (network, names, clocks, memory, ...): each fault with its fix
	@$(INVOKE) doctor --config $(CONFIG) $(QUIETLY)

down: venv ## power every VM off (ACPI, then quit, then kill) and remove the cluster's tmux sessions
	@$(INVOKE) down --config $(CONFIG) $(QUIETLY)

destroy: venv ## power every VM off and delete state_dir with every VM's disk (asks first; the image cache stays)
	@$(INVOKE) destroy --config $(CONFIG) $(QUIETLY)

hostnet: venv ## Linux, bridge mode: make the host side (bridge, forwarding, NAT, DNS/DHCP, /etc/hosts, pod routes, NFS) and a unit that makes it again at boot; asks sudo once
	@scripts/install-deps --hostnet
	@if [ "$$(id -u)" = 0 ]; then $(INVOKE) hostnet --persist --config $(CONFIG); else sudo $(INVOKE) hostnet --persist --config $(CONFIG); fi

clean-venv: ## remove .venv (your VMs under state_dir are kept)
	rm -rf $(VENV)

# ---- the cluster: per-VM files with their real prerequisites --------------

ifneq ($(filter $(CLUSTER_GOALS),$(MAKECMDGOALS)),)
-include $(CLUSTER_MK)
endif

$(CLUSTER_MK): $(CONFIG) | deps $(BIN)/.installed $(BIN)/.compiled
	@$(INVOKE) makevars --config $(CONFIG) --output $@ $(QUIETLY)

VM_DIRS := $(addprefix $(KUBENET_STATE)/,$(KUBENET_VMS))
DISKS := $(addsuffix /disk.img,$(VM_DIRS))
SEEDS := $(addsuffix /cidata.iso,$(VM_DIRS))
EFIVARS := $(if $(KUBENET_EFIVARS),$(addsuffix /efivars.qcow2,$(VM_DIRS)))

ifneq ($(KUBENET_BASE_IMAGE),)
$(KUBENET_BASE_IMAGE):
	@$(INVOKE) image --config $(CONFIG) $(QUIETLY)
endif

# Make decides what is out of date; one invoke makes all of it. The per-file
# rules below only note their file in SETUP_TODO, and `setup` hands that list
# to one `invoke vmsetup --files-from`.
SETUP_TODO := $(dir $(CONFIG)).$(basename $(notdir $(CONFIG))).todo

# A disk needs the base image to exist, but is never remade when the image
# changes: once created it holds the VM's data (order-only prerequisite).
$(KUBENET_STATE)/%/disk.img: | $(KUBENET_BASE_IMAGE)
	@echo $@ >> $(SETUP_TODO)

$(KUBENET_STATE)/%/efivars.qcow2:
	@echo $@ >> $(SETUP_TODO)

# A seed is remade whenever what it is made from changes.
$(KUBENET_STATE)/%/cidata.iso: $(CONFIG) $(KUBENET_SEED_INPUTS)
	@echo $@ >> $(SETUP_TODO)

# A seed damaged since it was written (truncated, say) no longer matches the
# checksum written beside it, and one without that checksum cannot be trusted:
# both are remade, although newer than their inputs. One checksum process in all.
SEED_SUMS := $(wildcard $(addsuffix .sha256,$(SEEDS)))
SHA256SUM := $(or $(shell command -v sha256sum 2>/dev/null),shasum -a 256)
DAMAGED_SEEDS := $(if $(SEED_SUMS),$(shell $(SHA256SUM) -c $(SEED_SUMS) </dev/null 2>/dev/null | sed -n 's/: FAILED.*$$//p'))
UNCHECKED_SEEDS := $(filter-out $(SEED_SUMS:.sha256=),$(wildcard $(SEEDS)))
$(sort $(DAMAGED_SEEDS) $(UNCHECKED_SEEDS)): FORCE
FORCE:
.PHONY: FORCE

# The ssh files are written together, after the seeds (which make the host keys);
# known_hosts is remade when it is missing too.
$(KUBENET_STATE)/known_hosts: $(CONFIG) $(SEEDS)
	@echo $@ >> $(SETUP_TODO)

$(KUBENET_STATE)/ssh_config: $(KUBENET_STATE)/known_hosts
	@echo $@ >> $(SETUP_TODO)

setup: $(DISKS) $(EFIVARS) $(SEEDS) $(KUBENET_STATE)/known_hosts $(KUBENET_STATE)/ssh_config ## prepare every VM: base image, disks, cloud-init seeds, host keys, ssh_config
	@if [ -s $(SETUP_TODO) ]; then $(INVOKE) vmsetup --config $(CONFIG) --files-from $(SETUP_TODO) $(QUIETLY) && rm -f $(SETUP_TODO); fi
	@# VMs on other hosts (hosts: in cluster.yaml): each host decides and makes its own files
	$(if $(KUBENET_HOSTS),@$(INVOKE) setup-hosts --config $(CONFIG) $(QUIETLY))

# Never delete a disk, UEFI store, base image or seed because a recipe was
# interrupted: each is written whole (or not at all).
.PRECIOUS: $(DISKS) $(EFIVARS) $(KUBENET_BASE_IMAGE) $(SEEDS) $(KUBENET_STATE)/known_hosts $(KUBENET_STATE)/ssh_config

up: setup ## prepare what is missing, launch every VM in tmux session <cluster>-qemu and wait until they are ready
	@$(INVOKE) up --config $(CONFIG) $(QUIETLY)

endif
