#!/usr/bin/env bash
# Prints a registries.conf that maps the registries critest names
# (registry.k8s.io, k8s.gcr.io, gcr.io, public.ecr.aws) to the local
# registry ${1:-127.0.0.1:5000}, over plain HTTP, keeping repository paths.
reg=${1:-127.0.0.1:5000}
echo 'unqualified-search-registries = []'
for h in registry.k8s.io k8s.gcr.io gcr.io public.ecr.aws; do
  printf '[[registry]]\nprefix = "%s"\nlocation = "%s"\ninsecure = true\n' "$h" "$reg"
done
