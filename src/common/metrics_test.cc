#include "common/metrics.h"

#include <gtest/gtest.h>

namespace ds {
namespace {

TEST(Metrics, RendersCountersHistogramsAndEscapesLabels) {
  MetricsRegistry r;
  r.DeclareCounter("x_total", "Things.\nDone \\ here");
  r.DeclareHistogram("lat_seconds", "Latency", {0.1, 1});
  r.Add("x_total", {{"path", "a\"b\\c\nd"}}, 2);
  r.Observe("lat_seconds", 0.05);
  r.Observe("lat_seconds", 0.5);
  r.Observe("lat_seconds", 5);
  EXPECT_EQ(r.Value("x_total", {{"path", "a\"b\\c\nd"}}), 2);
  EXPECT_EQ(RenderMetrics(r.Families()),
            "# HELP x_total Things.\\nDone \\\\ here\n"
            "# TYPE x_total counter\n"
            "x_total{path=\"a\\\"b\\\\c\\nd\"} 2\n"
            "# HELP lat_seconds Latency\n"
            "# TYPE lat_seconds histogram\n"
            "lat_seconds_bucket{le=\"0.1\"} 1\n"
            "lat_seconds_bucket{le=\"1\"} 2\n"
            "lat_seconds_bucket{le=\"+Inf\"} 3\n"
            "lat_seconds_sum 5.55\n"
            "lat_seconds_count 3\n");
}

TEST(Metrics, UnlabelledCounterWithoutSamplesRendersZero) {
  MetricsRegistry r;
  r.DeclareCounter("y_total", "Y");
  EXPECT_EQ(RenderMetrics(r.Families()), "# HELP y_total Y\n# TYPE y_total counter\ny_total 0\n");
}

}  // namespace
}  // namespace ds
