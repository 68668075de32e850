"""Offline training of CGCNN / SR-CGCNN on CGCNN-format folders, evaluation and export."""
