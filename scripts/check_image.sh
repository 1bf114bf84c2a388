#!/usr/bin/env bash
# Build the Docker image with podman, from a local Debian base, and train in it at build time.
#
#   scripts/check_image.sh              build the base (once), then `--target smoke` and the runtime image
#   scripts/check_image.sh --dry-run    check the files the build needs; print the commands, build nothing
#   scripts/check_image.sh --doctor-only   the smoke stage runs only `xpnet-doctor`, no training
#   scripts/check_image.sh --apt-base   a base without Python, as NVIDIA's images are: apt installs it
#   scripts/check_image.sh --no-cache   rebuild every layer (downloads every wheel again)
#
# Why this way: no image registry is reachable here and there is no Docker engine, so the base is made with
# debootstrap (Debian bookworm: python3 + venv) and imported into podman; containers cannot be started
# (no cgroups), so everything is checked in RUN steps (chroot isolation) and by inspecting the image.
# The NVIDIA base the Dockerfile defaults to is swapped for that local one with --build-arg BASE_IMAGE.
# Idempotent: an existing base image (or debootstrap folder) is reused; layers are cached, except the
# smoke step, which runs on every call. Slow (minutes; CuPy's wheel is large): `make image-check`, not CI.
set -euo pipefail
cd "$(dirname "$0")/.."

BASE_TAG=${BASE_TAG:-localhost/local/debian:bookworm}
BASE_ROOT=${BASE_ROOT:-/tmp/xpnet-base}
IMAGE=${IMAGE:-localhost/xpnet}
CA_BUNDLE=${CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}
SMOKE_ARGS=${SMOKE_ARGS:---device cuda --epochs 1 --limit-train 2000 --quiet --out /tmp/smoke}
DRY_RUN=0
NO_CACHE=()
BASE_INCLUDE=python3,python3-venv,ca-certificates

usage() { sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'; }

while (($#)); do
  case $1 in
    --dry-run) DRY_RUN=1 ;;
    --doctor-only) SMOKE_ARGS="" ;;
    --no-cache) NO_CACHE=(--no-cache) ;;
    --apt-base)
      BASE_TAG=localhost/local/debian:bookworm-nopython BASE_ROOT=/tmp/xpnet-base-nopython
      BASE_INCLUDE=ca-certificates IMAGE=localhost/xpnet-aptbase ;;
    -h | --help) usage; exit 0 ;;
    *) echo "check_image.sh: unknown option $1" >&2; usage >&2; exit 2 ;;
  esac
  shift
done

say() { printf '\n== %s\n' "$*"; }
run() {  # print the command, then run it unless --dry-run
  printf '+'; printf ' %q' "$@"; printf '\n'
  ((DRY_RUN)) || "$@"
}
die() { echo "check_image.sh: $*" >&2; exit 1; }

say "files the build needs"
missing=0
for f in Dockerfile .dockerignore pyproject.toml README.md xpnet/__init__.py xpnet/cli/doctor.py \
         backends/cpu.txt backends/cuda12.txt backends/test.txt backends/build.txt; do
  if [[ -f $f ]]; then echo "ok       $f"; else echo "MISSING  $f"; missing=1; fi
done
for stage in base wheel app smoke runtime; do
  grep -Eq "^FROM .* AS ${stage}\$" Dockerfile || { echo "MISSING  Dockerfile stage '$stage'"; missing=1; }
done
grep -q '^ENTRYPOINT \["xpnet-train"\]' Dockerfile || { echo "MISSING  ENTRYPOINT [\"xpnet-train\"]"; missing=1; }
for f in backends/cpu.txt backends/cuda12.txt backends/test.txt backends/build.txt; do
  [[ ! -f $f ]] || grep -q -- '--hash=sha256:' "$f" || { echo "NO HASHES $f"; missing=1; }
done
((missing == 0)) || die "the build cannot work with files missing (see above)"
if [[ -n $SMOKE_ARGS && ! -f xpnet/cli/train.py ]]; then
  echo "note     xpnet/cli/train.py is not there yet: the smoke stage runs the doctor only"
  SMOKE_ARGS=""
fi

say "tools: podman and debootstrap"
if ! command -v podman >/dev/null || ! command -v debootstrap >/dev/null; then
  ((DRY_RUN)) || ((EUID == 0)) || die "podman and debootstrap are missing; install them as root"
  run apt-get update -qq
  run env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq podman debootstrap
fi
# Without cgroups podman cannot set rlimits on build containers: ask it to set none.
if ! grep -qs '^default_ulimits *= *\[\]' /etc/containers/containers.conf; then
  if [[ -s /etc/containers/containers.conf ]]; then
    echo "note     /etc/containers/containers.conf exists without default_ulimits = []; add it by hand if builds fail"
  else
    run mkdir -p /etc/containers
    run bash -c 'printf "[containers]\ndefault_ulimits = []\n" > /etc/containers/containers.conf'
  fi
fi

say "base image $BASE_TAG"
if command -v podman >/dev/null && podman image exists "$BASE_TAG"; then
  echo "reusing $BASE_TAG"
else
  if [[ ! -f ${BASE_ROOT}.complete ]]; then
    run rm -rf "$BASE_ROOT" "${BASE_ROOT}.complete"
    run debootstrap --variant=minbase "--include=$BASE_INCLUDE" bookworm "$BASE_ROOT"
    run touch "${BASE_ROOT}.complete"
  else
    echo "reusing the debootstrap folder $BASE_ROOT"
  fi
  run bash -c "tar -C '$BASE_ROOT' -c . | podman import - '$BASE_TAG'"
fi

# --format docker: OCI images have no SHELL, and the Dockerfile's SHELL (bash, pipefail) should hold as in Docker.
build=(podman build --isolation=chroot --format docker --build-arg "BASE_IMAGE=$BASE_TAG")
# pip in the build checks TLS against this machine's CA bundle (Debian's pip reads the system bundle).
[[ ! -f $CA_BUNDLE ]] || build+=(-v "$CA_BUNDLE:/etc/ssl/certs/ca-certificates.crt:ro")

say "smoke stage: doctor${SMOKE_ARGS:+, then xpnet-train $SMOKE_ARGS}"
start=$SECONDS
# SMOKE_RUN_ID changes on every call, so the smoke step reruns even when every layer is cached.
run "${build[@]}" "${NO_CACHE[@]}" --target smoke --build-arg "SMOKE_ARGS=$SMOKE_ARGS" --build-arg "SMOKE_RUN_ID=$(date +%s)" \
  -t "$IMAGE:smoke" -f Dockerfile .
echo "smoke stage built in $((SECONDS - start)) s"

say "runtime image $IMAGE:latest (the default target; layers shared with the smoke build)"
run "${build[@]}" -t "$IMAGE:latest" -f Dockerfile .

say "runtime image configuration"
fmt='entrypoint={{json .Config.Entrypoint}} user={{.Config.User}} workdir={{.Config.WorkingDir}} volumes={{json .Config.Volumes}}'
run podman image inspect --format "$fmt" "$IMAGE:latest"
if ((!DRY_RUN)); then
  conf=$(podman image inspect --format "$fmt {{json .Config.Env}}" "$IMAGE:latest")
  for want in 'entrypoint=["xpnet-train"]' 'user=10001:0' 'workdir=/data' '"/data":{}' 'XPNET_DATA_DIR=/data'; do
    [[ $conf == *"$want"* ]] || die "the runtime image lacks $want: $conf"
  done
  run podman image ls "$IMAGE"
  echo
  echo "check_image.sh: OK: $IMAGE:smoke (smoke${SMOKE_ARGS:+ training} passed) and $IMAGE:latest built"
else
  echo
  echo "check_image.sh: dry run OK: files present; the commands above are what a real run does"
fi
