# A Python workload for the preload test: containers, strings, json, regex,
# compression, hashing and threads. Prints deterministic results.
import hashlib
import json
import queue
import re
import threading
import zlib

words = ["w%d" % (i * 7919 % 10007) for i in range(60000)]
counts = {}
for w in words:
    counts[w] = counts.get(w, 0) + 1
print(len(counts), sorted(counts.items())[:3])

doc = {"items": [{"id": i, "name": "item-%d" % i, "tags": list(range(i % 13))} for i in range(5000)]}
text = json.dumps(doc, sort_keys=True)
print(len(text), hashlib.sha256(text.encode()).hexdigest())
print(len(json.loads(text)["items"]))

print(len(re.findall(r"item-(\d+)7", text)))
blob = zlib.compress(text.encode() * 3, 6)
print(len(zlib.decompress(blob)))

q = queue.Queue()
def worker(n):
    q.put(sum(len(str(x)) for x in range(n * 10000, (n + 1) * 10000)))
threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
for t in threads:
    t.start()
for t in threads:
    t.join()
print(sorted(q.get() for _ in range(4)))

big = [bytes(1000 + i % 300000) for i in range(300)]
print(sum(map(len, big)))
s = set(range(200000))
s -= set(range(0, 200000, 3))
print(len(s), sum(s) % 1000003)
