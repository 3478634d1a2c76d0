.PHONY: run test build format

run:
	scripts/run.sh

test:
	scripts/test.sh

build:
	swift build --build-tests

format:
	swift format --in-place --recursive --configuration .swift-format Sources Tests
