package store

import (
	"github.com/prometheus/client_golang/prometheus"
)

var dbDescs = struct {
	disk, live, mem, wal, compactions, compactDebt, compactSecs, flushes, readAmp, cacheBytes, cacheHits, cacheMisses *prometheus.Desc
}{
	disk:        prometheus.NewDesc("cairn_store_disk_usage_bytes", "Disk space the pebble database uses (sstables, WAL, in-progress compactions).", []string{"db"}, nil),
	live:        prometheus.NewDesc("cairn_store_sstable_bytes", "Size of the database's live sstables.", []string{"db"}, nil),
	mem:         prometheus.NewDesc("cairn_store_memtable_bytes", "Size of the database's memtables.", []string{"db"}, nil),
	wal:         prometheus.NewDesc("cairn_store_wal_bytes", "Size of the database's write-ahead log.", []string{"db"}, nil),
	compactions: prometheus.NewDesc("cairn_store_compactions_total", "Compactions the database has run since it was opened.", []string{"db"}, nil),
	compactDebt: prometheus.NewDesc("cairn_store_compaction_debt_bytes", "Bytes pebble estimates it must compact to reach a stable shape.", []string{"db"}, nil),
	compactSecs: prometheus.NewDesc("cairn_store_compaction_seconds_total", "Time spent in compactions since the database was opened.", []string{"db"}, nil),
	flushes:     prometheus.NewDesc("cairn_store_flushes_total", "Memtable flushes since the database was opened.", []string{"db"}, nil),
	readAmp:     prometheus.NewDesc("cairn_store_read_amplification", "Sublevels and levels a read may have to look in.", []string{"db"}, nil),
	cacheBytes:  prometheus.NewDesc("cairn_store_block_cache_bytes", "Bytes in the database's block cache.", []string{"db"}, nil),
	cacheHits:   prometheus.NewDesc("cairn_store_block_cache_hits_total", "Block cache hits.", []string{"db"}, nil),
	cacheMisses: prometheus.NewDesc("cairn_store_block_cache_misses_total", "Block cache misses.", []string{"db"}, nil),
}

// dbCollector reports one database's pebble metrics.
type dbCollector struct {
	d    *DB
	name string
}

// Collector returns the database's pebble metrics (sizes, compactions,
// flushes, block cache), labelled db=name. They are read from pebble when
// scraped, so they cost nothing in between.
func (d *DB) Collector(name string) prometheus.Collector { return dbCollector{d, name} }

// Describe sends nothing: the collector is unchecked, because every database
// of a node reports the same families (told apart by the db label), through
// the collectors of the components that own them.
func (c dbCollector) Describe(chan<- *prometheus.Desc) {}

func (c dbCollector) Collect(ch chan<- prometheus.Metric) {
	if c.d.Closed() {
		return
	}
	m := c.d.db.Metrics()
	gauge := func(d *prometheus.Desc, v float64) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, c.name)
	}
	counter := func(d *prometheus.Desc, v float64) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v, c.name)
	}
	gauge(dbDescs.disk, float64(m.DiskSpaceUsage()))
	gauge(dbDescs.live, float64(m.Total().Size))
	gauge(dbDescs.mem, float64(m.MemTable.Size))
	gauge(dbDescs.wal, float64(m.WAL.Size))
	counter(dbDescs.compactions, float64(m.Compact.Count))
	gauge(dbDescs.compactDebt, float64(m.Compact.EstimatedDebt))
	counter(dbDescs.compactSecs, m.Compact.Duration.Seconds())
	counter(dbDescs.flushes, float64(m.Flush.Count))
	gauge(dbDescs.readAmp, float64(m.ReadAmp()))
	gauge(dbDescs.cacheBytes, float64(m.BlockCache.Size))
	counter(dbDescs.cacheHits, float64(m.BlockCache.Hits))
	counter(dbDescs.cacheMisses, float64(m.BlockCache.Misses))
}
