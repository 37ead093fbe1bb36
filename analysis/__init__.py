"""Result records → pandas → paper-style ablation tables and figures."""
