// A metric sample (common/prometheus_text.h) as the wire's sesame.v1.Metric:
// what agents send in heartbeats and the controller answers in GetStats.
// Header-only, so that common/ does not link the protocol library; its
// users do.
#pragma once

#include "common/prometheus_text.h"
#include "sesame/v1/common.pb.h"

namespace sesame {

inline v1::Metric ToWireMetric(const MetricSample& sample) {
  v1::Metric m;
  m.set_name(sample.name);
  m.mutable_labels()->insert(sample.labels.begin(), sample.labels.end());
  m.set_value(sample.value);
  m.set_counter(sample.kind == MetricKind::kCounter);
  return m;
}

}  // namespace sesame
