"""On-disk storage of the render server: content-addressed assets, per-job folders, frames, images, videos."""
