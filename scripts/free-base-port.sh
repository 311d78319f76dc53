# Sourced by the scripts that start a cluster of their own beside others
# (riak-tests.sh, python-client-tests.sh, ui-test.sh): picks a block of
# ports no one is listening on.

# True when something listens on 127.0.0.1:$1.
port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# free_base_port FIRST OFFSET...: prints the first of FIRST, FIRST+100, ...,
# FIRST+500 whose ports base+OFFSET are all free; fails when none is.
free_base_port() {
  local first=$1 b o free
  shift
  for b in $(seq "$first" 100 $((first + 500))); do
    free=1
    for o in "$@"; do
      if port_busy $((b + o)); then free=0; break; fi
    done
    if [ "$free" = 1 ]; then echo "$b"; return 0; fi
  done
  echo "no free ports for the cluster" >&2
  return 1
}
