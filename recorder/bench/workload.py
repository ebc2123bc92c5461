# A python3 workload: dicts, lists, strings, json round trips.
import json
data = []
for i in range(200000):
    d = {"id": i, "name": "item%d" % i, "tags": [str(i % 7), str(i % 11)]}
    data.append(d)
s = json.dumps(data)
back = json.loads(s)
print(len(back), sum(len(x["name"]) for x in back))
