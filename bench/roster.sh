# Sourced by the benchmarks: `roster N` prints a roster CSV of N students (s1..sN).
roster() {
  echo 'id,name,email'
  for i in $(seq 1 "$1"); do echo "s$i,Student $i,s$i@example.edu"; done
}
