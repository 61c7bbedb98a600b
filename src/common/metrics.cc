#include "common/metrics.h"

#include <cmath>
#include <cstdio>
#include <cstdlib>

namespace ds {
namespace {

std::string FormatValue(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  if (v == std::floor(v) && std::fabs(v) < 1e15) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.0f", v);
    return buf;
  }
  char buf[32];
  for (int precision = 6; precision <= 17; ++precision) {  // shortest that reads back exactly
    std::snprintf(buf, sizeof buf, "%.*g", precision, v);
    if (std::strtod(buf, nullptr) == v) break;
  }
  return buf;
}

std::string EscapeHelp(const std::string& help) {
  std::string out;
  for (char c : help) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

}  // namespace

std::string EscapeLabelValue(const std::string& value) {
  std::string out;
  out.reserve(value.size());
  for (char c : value) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '"') {
      out += "\\\"";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

std::string RenderMetrics(const std::vector<MetricFamily>& families) {
  std::string out;
  for (const auto& f : families) {
    out += "# HELP " + f.name + " " + EscapeHelp(f.help) + "\n";
    out += "# TYPE " + f.name + " " + f.type + "\n";
    for (const auto& s : f.samples) {
      out += f.name + s.suffix;
      if (!s.labels.empty()) {
        out += "{";
        for (size_t i = 0; i < s.labels.size(); ++i) {
          if (i > 0) out += ",";
          out += s.labels[i].first + "=\"" + EscapeLabelValue(s.labels[i].second) + "\"";
        }
        out += "}";
      }
      out += " " + FormatValue(s.value) + "\n";
    }
  }
  return out;
}

void MetricsRegistry::DeclareCounter(const std::string& name, const std::string& help) {
  MutexLock lock(&mu_);
  if (families_.count(name)) return;
  order_.push_back(name);
  families_[name] = Family{help, "counter", {}, {}};
}

void MetricsRegistry::DeclareHistogram(const std::string& name, const std::string& help,
                                       std::vector<double> bounds) {
  MutexLock lock(&mu_);
  if (families_.count(name)) return;
  order_.push_back(name);
  Family f{help, "histogram", {}, {}};
  f.histogram.counts.assign(bounds.size() + 1, 0);
  f.histogram.bounds = std::move(bounds);
  families_[name] = std::move(f);
}

void MetricsRegistry::Add(const std::string& name, const MetricLabels& labels, double delta) {
  MutexLock lock(&mu_);
  auto it = families_.find(name);
  if (it == families_.end()) return;
  it->second.values[labels] += delta;
}

void MetricsRegistry::Observe(const std::string& name, double value) {
  MutexLock lock(&mu_);
  auto it = families_.find(name);
  if (it == families_.end()) return;
  Histogram& h = it->second.histogram;
  size_t i = 0;
  while (i < h.bounds.size() && value > h.bounds[i]) ++i;
  ++h.counts[i];
  h.sum += value;
  ++h.count;
}

double MetricsRegistry::Value(const std::string& name, const MetricLabels& labels) const {
  MutexLock lock(&mu_);
  auto it = families_.find(name);
  if (it == families_.end()) return 0;
  auto v = it->second.values.find(labels);
  return v == it->second.values.end() ? 0 : v->second;
}

std::vector<MetricFamily> MetricsRegistry::Families() const {
  MutexLock lock(&mu_);
  std::vector<MetricFamily> out;
  for (const auto& name : order_) {
    const Family& f = families_.at(name);
    MetricFamily m{name, f.help, f.type, {}};
    if (f.type == "histogram") {
      uint64_t cumulative = 0;
      for (size_t i = 0; i < f.histogram.counts.size(); ++i) {
        cumulative += f.histogram.counts[i];
        std::string le =
            i < f.histogram.bounds.size() ? FormatValue(f.histogram.bounds[i]) : "+Inf";
        m.samples.push_back({"_bucket", {{"le", le}}, static_cast<double>(cumulative)});
      }
      m.samples.push_back({"_sum", {}, f.histogram.sum});
      m.samples.push_back({"_count", {}, static_cast<double>(f.histogram.count)});
    } else if (f.values.empty()) {
      m.samples.push_back({"", {}, 0});
    } else {
      for (const auto& [labels, v] : f.values) m.samples.push_back({"", labels, v});
    }
    out.push_back(std::move(m));
  }
  return out;
}

}  // namespace ds
