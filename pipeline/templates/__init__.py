"""Template images for subtraction: an uploaded file or survey cutouts, on the image grid."""
