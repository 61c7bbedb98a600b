// Prometheus text exposition (format 0.0.4): counters, gauges and histograms kept in memory by a
// process (server or agent) and rendered for GET /metrics. Thread-safe.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "common/mutex.h"

namespace ds {

using MetricLabels = std::vector<std::pair<std::string, std::string>>;

// One metric family as rendered: HELP, TYPE and its samples.
struct MetricFamily {
  std::string name;  // [a-zA-Z_:][a-zA-Z0-9_:]*
  std::string help;
  std::string type;  // counter | gauge | histogram
  struct Sample {
    std::string suffix;  // "" or _bucket / _sum / _count
    MetricLabels labels;
    double value = 0;
  };
  std::vector<Sample> samples;
};

// `value` escaped for a label value: backslash, double quote and newline.
std::string EscapeLabelValue(const std::string& value);
// The families in text format, each with its # HELP and # TYPE lines.
std::string RenderMetrics(const std::vector<MetricFamily>& families);

// In-process counters and histograms. Families are declared once (Declare*), then updated.
class MetricsRegistry {
 public:
  void DeclareCounter(const std::string& name, const std::string& help);
  // `bounds`: upper bounds of the buckets, ascending (+Inf is added).
  void DeclareHistogram(const std::string& name, const std::string& help,
                        std::vector<double> bounds);
  // REQUIRES: the counter was declared.
  void Add(const std::string& name, const MetricLabels& labels, double delta = 1);
  void Observe(const std::string& name, double value);
  // Every declared family, declared order; counters without samples render as one 0 sample
  // when they take no labels.
  std::vector<MetricFamily> Families() const;
  // Current value of one counter sample (0 when never added); for tests and status.
  double Value(const std::string& name, const MetricLabels& labels = {}) const;

 private:
  struct Histogram {
    std::vector<double> bounds;
    std::vector<uint64_t> counts;  // per bound, not cumulative; last = +Inf
    double sum = 0;
    uint64_t count = 0;
  };
  struct Family {
    std::string help, type;
    std::map<MetricLabels, double> values;  // counters
    Histogram histogram;
  };
  mutable Mutex mu_;
  std::vector<std::string> order_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, Family> families_ ABSL_GUARDED_BY(mu_);
};

}  // namespace ds
