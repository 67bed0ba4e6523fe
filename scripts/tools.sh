# Sourced by the test and benchmark scripts: what they need that cargo does
# not fetch, installed once into the project folder (.venv/, .tools/), at
# pinned versions.

# The venv's python, after installing the Python packages the suites use:
# fastavro (with its codecs), the Azure SDK's blob client, schemathesis and
# Playwright (driving the system's Chromium: it downloads no browser).
python_tools() {
  local venv="$PWD/.venv"
  [ -x "$venv/bin/python" ] || python3 -m venv "$venv"
  if ! "$venv/bin/python" -c 'import fastavro, cramjam, backports.zstd, azure.storage.blob, schemathesis, playwright' 2>/dev/null; then
    "$venv/bin/pip" install --quiet --disable-pip-version-check \
      'fastavro==1.13.1' 'cramjam==2.14.0' 'backports.zstd==1.8.0' 'azure-storage-blob==12.27.1' \
      'schemathesis==4.32.5' 'playwright==1.65.2'
  fi
  HRMIG_PYTHON="$venv/bin/python"
  export HRMIG_PYTHON
}

# Azurite's blob service (3.35.0, the last release for Node 20), installed
# with npm; HRMIG_AZURITE names it (missing when npm is not there).
azurite_tool() {
  HRMIG_AZURITE="$PWD/.tools/node_modules/.bin/azurite-blob"
  export HRMIG_AZURITE
  [ -x "$HRMIG_AZURITE" ] && return 0
  if command -v npm >/dev/null 2>&1; then
    npm install --silent --no-save --no-audit --no-fund --no-package-lock \
      --prefix "$PWD/.tools" 'azurite@3.35.0'
  else
    echo "*** WARNING: npm not found: Azurite cannot be installed; the Azure Blob tests will be skipped." >&2
  fi
}

# The hrmig binary a benchmark measures: HRMIG_BIN when it names one (to
# compare two builds on one machine, in one run), else the release build of
# this checkout, built first.
hrmig_bin() {
  if [ -n "${HRMIG_BIN:-}" ]; then
    realpath "$HRMIG_BIN"
  else
    cargo build --release --quiet
    echo "$PWD/target/release/hrmig"
  fi
}
