// Writes a StoreImage (store_image.h) under an empty etcd prefix, keeping
// every id, revision and audit record as it was: the etcd half of
// `sesame-controller migrate`. The head key goes last, in the transaction
// that also checks nobody else wrote one, so a controller started on the
// prefix meanwhile sees an empty store or the whole image, never a part.
// On failure the partial copy is removed.
#pragma once

#include "absl/status/status.h"
#include "controller/store/etcd/etcd_client.h"
#include "controller/store/etcd/etcd_keys.h"
#include "controller/store/store_image.h"

namespace sesame::controller {

absl::Status ImportStoreImage(EtcdClient& client, const EtcdKeys& keys, const StoreImage& image);

}  // namespace sesame::controller
