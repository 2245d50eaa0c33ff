#!/usr/bin/env bash
# A short libFuzzer run of every parser target (safetensors, update bodies and
# keys, codec frames, configs): 10 s each. `make fuzz` runs them for 10 minutes.
exec bash "$(dirname "$0")/fuzz/run.sh" "${FEDERATE_FUZZ_SECONDS:-10}"
