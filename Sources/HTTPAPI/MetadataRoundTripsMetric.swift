import NIOConcurrencyHelpers
import Prometheus
import RegistryStore

extension HTTPMetrics {
    /// Brings `berth_metadata_round_trips_total{backend}` up to the store's own count (read at
    /// scrape time: the backends count without depending on the metrics system).
    func mirror(_ roundTrips: MetadataRoundTrips) {
        let total = roundTrips.total
        let added = roundTripsReported.withLockedValue { reported -> Int64 in
            let before = reported[roundTrips.backend] ?? 0
            guard total > before else { return 0 }
            reported[roundTrips.backend] = total
            return total - before
        }
        let counter = registry.makeCounter(name: "berth_metadata_round_trips_total", labels: [("backend", roundTrips.backend)],
                                           help: "Statements the metadata store sent to its database")
        counter.increment(by: added)
    }
}
