"""lungtk.ct_io: CT volumes with geometry: MHD/NIfTI/NRRD/DICOM I/O, xyz<->irc, preprocessing, crops, caches, data-set indexes."""
