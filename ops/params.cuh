// The per-sample parameter row; the same fields, in the same order, as ops/params.py PARAM_FIELDS.
// m3d_slot: -1 for a row without an offline 3D mask, else the row's own index in its batch; the masked
// faces and masks of a launch are aligned with its faces (row i's renders at i), read at m3d_slot.
#pragma once

#define FO_MAX_VERTICES 21

struct Params {
  int kind;
  int flip;
  int box[4];
  int colour[3];
  int n_vertices;
  int vx[FO_MAX_VERTICES];
  int vy[FO_MAX_VERTICES];
  int ellipse[4];
  int atlas;
  int src[4];
  int replace_alpha;
  int mask_alpha;
  int m3d_slot;  // -1, or this row's index in the batch (its masked face and mask are at that index)
  int m3d_mode;
  int m3d_rows[2];
  float m3d[4];
  int m3d_channels[3];
  unsigned int noise_seed;
  int light;
  float light_params[4];
};

#ifdef FO_PARAM_SIZE
static_assert(sizeof(Params) == FO_PARAM_SIZE, "Params differs from ops/params.py PARAM_DTYPE");
#endif
