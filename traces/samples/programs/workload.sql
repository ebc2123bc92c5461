-- sqlite3 sample workload: a table, an index, inserts from a recursive CTE, queries.
CREATE TABLE t(id INTEGER PRIMARY KEY, name TEXT, v REAL);
WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 20000)
INSERT INTO t SELECT x, 'name-' || x || '-' || hex(randomblob(8)), x * 0.5 FROM c;
CREATE INDEX t_name ON t(name);
SELECT count(*), sum(v) FROM t WHERE name LIKE 'name-1%';
SELECT name FROM t ORDER BY v DESC LIMIT 3;
DELETE FROM t WHERE id % 3 = 0;
SELECT count(*) FROM t;
