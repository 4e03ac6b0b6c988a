# WebSearch flow-size distribution (DCTCP, Alizadeh et al., SIGCOMM 2010, Fig. 4), as used in
# the HPCC paper (Li et al., SIGCOMM 2019) and its ns-3 simulator:
# alibaba-edu/High-Precision-Congestion-Control, traffic_gen/WebSearch_distribution.txt.
# Format: <flow size in bytes> <cumulative percent>; sizes between points are interpolated
# linearly (as traffic_gen/custom_rand.py does). Mean ≈ 1.71 MB.
0 0
10000 15
20000 20
30000 30
50000 40
80000 53
200000 60
1000000 70
2000000 80
5000000 90
10000000 97
30000000 100
