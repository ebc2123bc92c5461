-- A sqlite3 workload: inserts, an index, aggregates.
create table t(a integer, b text);
with recursive c(x) as (select 1 union all select x + 1 from c where x < 200000)
insert into t select x, printf('row %d', x) from c;
create index ti on t(b);
select count(*), sum(a), max(length(b)) from t;
select b from t where a % 50000 = 0 order by b;
