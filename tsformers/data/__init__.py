"""Frames in and out, validation, scaling and windows."""
from tsformers.data.frames import Panel, PanelSchema, as_pandas, frame_to_panel, infer_schema, panel_to_frame
from tsformers.data.scaling import PanelScaler
from tsformers.data.windows import WindowDataset, split_train_val, validation_steps

__all__ = ["Panel", "PanelSchema", "PanelScaler", "WindowDataset", "as_pandas", "frame_to_panel", "infer_schema",
           "panel_to_frame", "split_train_val", "validation_steps"]
