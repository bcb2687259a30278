# The two commands of the README. Both set everything up first (idempotent, cached).
.PHONY: demo test setup setup-test

demo:
	bash scripts/setup.sh demo
	.venv/bin/vr-trainer run --out out/demo

test:
	bash scripts/setup.sh test
	bash scripts/test.sh
