# Sourced by the benchmarks that compare with Python peers: `peers_python` prints the path
# of a Python with bench/peers/requirements.txt installed, in a venv under ~/.cache keyed by
# that file's hash (made on first use: a few minutes, from PyPI).
peers_python() {
  local dir key venv
  dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/peers
  key=$(sha256sum "$dir/requirements.txt" | cut -c1-12)
  venv=${XDG_CACHE_HOME:-$HOME/.cache}/labctl-bench/peers-$key
  if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv.tmp" >&2
    "$venv.tmp/bin/pip" install --quiet --disable-pip-version-check -r "$dir/requirements.txt" >&2
    mv "$venv.tmp" "$venv"
  fi
  echo "$venv/bin/python"
}
