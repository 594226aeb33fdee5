#!/usr/bin/env python3
"""Lists every project with python-gitlab, the way its documentation shows it, and reports the
time and count as JSON: the reference side of `make bench-sync`.

usage: python_gitlab_list.py URL TOKEN CA_FILE
"""
import json
import sys
import time

import gitlab

url, token, ca_file = sys.argv[1:4]
gl = gitlab.Gitlab(url, private_token=token, ssl_verify=ca_file, retry_transient_errors=True)
start = time.perf_counter()
count = 0
for project in gl.projects.list(membership=True, iterator=True, per_page=100):
    # Touch a field so each item is really decoded into an object.
    if project.id:
        count += 1
elapsed = time.perf_counter() - start
print(json.dumps({"projects": count, "seconds": elapsed, "python_gitlab": gitlab.__version__}))
