# Python sample workload: dicts, lists, strings, a JSON round trip.
import json

rows = [{"id": i, "name": "item-%d" % i, "tags": ["t%d" % (i % 7)] * (i % 5)} for i in range(20000)]
text = json.dumps(rows)
back = json.loads(text)
index = {r["name"]: r for r in back}
words = " ".join(r["name"] for r in rows).split()
del rows, text
print(len(back), len(index), len(words))
