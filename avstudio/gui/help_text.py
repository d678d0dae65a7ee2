"""Help pages of the app, as Markdown (Qt-free: docs/gui.md holds the same text, a test checks)."""

from __future__ import annotations

#: Help › Reading the heatmaps (and docs/gui.md, section "Reading the heatmaps")
READING_HEATMAPS = """\
Each sound cluster the model found has one colour, the same over the video, in the panel
and in the timeline.

- **The map** of a cluster, for each spot of the frame: how well what the model sees there
  matches that cluster's sound (the cosine similarity of the spot's visual feature and the
  cluster's audio centre, over the second of audio around the frame), as a share of the best
  match in the frame: 1 at the best spot, falling off quickly elsewhere.
- **Fill**: the area where the map is above the *threshold*; more opaque where the map is
  higher. Nothing is drawn below the threshold. The threshold (Heatmaps › Threshold) is a
  fixed value (the slider), or chosen per frame and per cluster: Otsu's threshold (the split
  of the map's values into low and high that separates them best) or the map's mean plus one
  standard deviation.
- **Outline**: the edge of the filled area, at the threshold.
- **Normalise each map per frame**: the map is stretched to 0..1 in every frame before the
  threshold (as the localization metrics do), so the fill always marks that frame's hottest
  area; off, a weak match stays weak.
- **Focus lane** (timeline, bottom row): per frame and cluster, the map's peak minus its
  median: near 0 for a flat map (the match is everywhere or nowhere), near 1 for one hot spot.
- **No fill**: the frame is not analysed yet (*heatmap pending…*), the cluster is hidden (click
  its colour swatch in the panel), or the clip has no sound (*this clip is silent: no heatmap*).
- A map says where the model *matches* the sound, not that the sound comes from there: check
  by ear (solo the cluster's separated sound, or click the spot to hear the sound of that
  pixel).
"""

#: the one-line legend under the heatmap settings (the panel)
LEGEND = ("Fill: where a cluster's map is above the threshold, more opaque where higher. "
          "Outline: the threshold's edge. Help › Reading the heatmaps says more.")

__all__ = ["LEGEND", "READING_HEATMAPS"]
