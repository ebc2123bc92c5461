-- A sqlite3 workload for the preload test: bulk insert, index, aggregate, join.
CREATE TABLE t(id INTEGER PRIMARY KEY, k INTEGER, v TEXT);
WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 60000)
INSERT INTO t(k, v) SELECT (x * 7919) % 1009, printf('value-%08d-%s', x, hex(x * x)) FROM c;
CREATE INDEX t_k ON t(k);
SELECT count(*), sum(length(v)), max(v) FROM t;
SELECT k, count(*), min(v) FROM t GROUP BY k ORDER BY count(*) DESC, k LIMIT 5;
CREATE TABLE u AS SELECT k, group_concat(id, ',') AS ids FROM t WHERE k < 50 GROUP BY k;
SELECT sum(length(ids)) FROM u;
SELECT count(*) FROM t JOIN u ON t.k = u.k;
