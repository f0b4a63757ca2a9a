# Entry points; each one does its own setup (tools/setup.sh).
.PHONY: deploy test teardown offline-images lint sanity molecule bench setup docs

IMAGES ?= official
INVENTORY ?= inventories/$(if $(filter offline,$(IMAGES)),offline,local)
ARGS ?=

deploy:            ## deploy the platform (IMAGES=offline: locally built images; INVENTORY=dir; ARGS=ansible-playbook options)
	bash tools/deploy.sh $(INVENTORY) $(if $(filter offline,$(IMAGES)),--offline-images) $(ARGS)

test:              ## the whole test suite
	bash tools/test.sh

teardown:          ## remove the platform's containers and network (VOLUMES=true: its data too)
	bash tools/setup.sh
	.venv/bin/ansible-playbook -i $(INVENTORY) playbooks/teardown.yml -e nocobase_teardown_volumes=$(or $(VOLUMES),false) $(ARGS)

setup:
	bash tools/setup.sh

offline-images:    ## build the local images (Redis, PostgreSQL, nginx, Python, the NocoBase stand-in, real NocoBase from npm)
	bash tools/setup.sh --offline-images

docs:              ## the docs site of every module, plugin and role (antsibull-docs, Sphinx) in .cache/docsite/build/html
	bash tools/docs.sh

lint:
	bash tools/setup.sh
	.venv/bin/python -m pytest tests/quality/test_lint.py

sanity:
	bash tools/setup.sh --oldest-core
	.venv/bin/python -m pytest tests/quality/test_sanity.py

molecule:
	bash tools/setup.sh --offline-images
	.venv/bin/python -m pytest tests/quality/test_molecule.py

bench:             ## benchmarks (they print figures; nothing is asserted)
	bash tools/setup.sh --offline-images
	.venv/bin/python benchmarks/control_plane.py
	.venv/bin/python benchmarks/proxy_and_queue.py
	.venv/bin/python benchmarks/proxy_routing.py
	.venv/bin/python benchmarks/provision.py
	.venv/bin/python benchmarks/real_nocobase.py
